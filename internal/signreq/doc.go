// Package signreq is the HTTP sign request as the shim, signerd and every
// client read it: the path POST /v1/keys/{id}/sign, its JSON body
// ({"message": BASE64} or {"digest": BASE64}), and the ES-HMAC-SHA256
// Authorization header that authenticates it (docs/protocol.md,
// "Authenticated sign requests").
//
// One definition serves both ends on purpose. The shim forwards an
// authenticated request's method, path, body and header unchanged, and
// signerd verifies the MAC over exactly those bytes and then parses only
// them: what is signed, and with which key, is decided from bytes the
// client's secret covers, never from a second encoding the host made.
//
// # The scheme
//
//	Authorization: ES-HMAC-SHA256 client=<id>, ts=<unix seconds>, nonce=<32 hex>, mac=<64 hex>
//
// mac is HMAC-SHA256 under the client's 32-byte secret of the MAC input
// (MACInput): the scheme name, audience, client id, timestamp, nonce,
// method, path and the SHA-256 of the body, each on its own line.
package signreq
