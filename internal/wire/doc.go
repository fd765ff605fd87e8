// Package wire is the protocol between the host (signer) and the enclave
// (signerd): length-prefixed CBOR frames, the messages they carry, the error
// codes, and the client and server plumbing that speaks it.
//
// # Frames
//
// Each frame is a 4-byte big-endian length, then one CBOR data item of
// exactly that length: the array [type, id, body], where type is the
// message Type, id the request id (answers echo it; 0 for the handshake and
// connection-level errors) and body the message, a CBOR map with small
// integer keys. A frame's body is read as its bytes arrive, never into a
// buffer sized from its length prefix alone; frames over MaxFrameSize (over
// MaxHelloSize for the first) are refused from their prefix.
// docs/protocol.md is the full specification.
//
// # Connections
//
// A client opens with Hello; the server answers HelloAck or a
// CodeVersionMismatch Error and closes (or, at its limit of unprivileged
// connections, a CodeTooManyConnections Error in place of either). After
// that the client sends requests with fresh nonzero ids, many at once, and
// the server answers each, in any order. [Server] serves a [Handler] on a net.Listener; [Conn] is the
// multiplexed client.
//
// # Errors
//
// An error answer is an [Error] frame with a stable [Code]. After one the
// connection keeps serving, except for the codes whose
// [Code.ClosesConn] is true: a malformed or oversized frame, or a version
// mismatch. On the client, errors.Is(err, ErrUnknownKey) and the like test
// the code; a dead connection gives errors wrapping [ErrConnClosed].
//
// # Secrets
//
// [ProvisionRequest] carries AWS credentials. Its String, GoString and
// LogValue, and those of [Credentials] and [Secret], redact them.
package wire
