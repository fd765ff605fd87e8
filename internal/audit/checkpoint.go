package audit

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Checkpoint is signerd's signature over the chain at one sequence
// number: every entry up to Seq, through the hash chain.
type Checkpoint struct {
	// Seq is the last entry covered; Hash the chain hash there (that
	// entry's hash).
	Seq  uint64
	Hash [32]byte
	// Time is when signerd signed.
	Time time.Time
	// Sig is the ed25519 signature of the boot's audit key over
	// CheckpointMessage.
	Sig []byte
}

// CheckpointMessage is what a checkpoint's signature covers:
//
//	"enclave-signer/audit/checkpoint/v1" 0x00 ‖ seq u64 ‖ hash [32] ‖ time i64
func CheckpointMessage(seq uint64, hash [32]byte, t time.Time) []byte {
	b := make([]byte, 0, len(checkpointDomain)+8+32+8)
	b = append(b, checkpointDomain...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, hash[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(unixNanos(t)))
}

// SignCheckpoint signs the chain at seq, whose hash is hash, at time t.
func SignCheckpoint(key ed25519.PrivateKey, seq uint64, hash [32]byte, t time.Time) *Checkpoint {
	return &Checkpoint{Seq: seq, Hash: hash, Time: t, Sig: ed25519.Sign(key, CheckpointMessage(seq, hash, t))}
}

// Verify reports whether c is signed by pub.
func (c *Checkpoint) Verify(pub ed25519.PublicKey) bool {
	return len(pub) == ed25519.PublicKeySize && len(c.Sig) == ed25519.SignatureSize &&
		ed25519.Verify(pub, CheckpointMessage(c.Seq, c.Hash, c.Time), c.Sig)
}

// Nonce sizes a head accepts: a caller's random bytes, 16 to 256 of them
// (32 is what signer audit head sends).
const (
	MinNonceSize = 16
	MaxNonceSize = 256
)

// Head is the chain's current end signed together with a caller's nonce
// (GET /v1/audit/head): a verifier holding a fresh head knows the log
// must reach Seq with Hash, which catches a log cut even right after a
// checkpoint.
type Head struct {
	// AuditKey is the boot's audit public key (32 bytes).
	AuditKey ed25519.PublicKey
	Seq      uint64
	Hash     [32]byte
	Time     time.Time
	Nonce    []byte
	// Sig is the ed25519 signature of AuditKey over HeadMessage.
	Sig []byte
}

// HeadMessage is what a head's signature covers:
//
//	"enclave-signer/audit/head/v1" 0x00 ‖ seq u64 ‖ hash [32] ‖ time i64 ‖ u16 len(nonce) ‖ nonce
func HeadMessage(seq uint64, hash [32]byte, t time.Time, nonce []byte) []byte {
	b := make([]byte, 0, len(headDomain)+8+32+8+2+len(nonce))
	b = append(b, headDomain...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(unixNanos(t)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(nonce)))
	return append(b, nonce...)
}

// CheckNonce refuses a nonce of the wrong size.
func CheckNonce(nonce []byte) error {
	if len(nonce) < MinNonceSize || len(nonce) > MaxNonceSize {
		return fmt.Errorf("nonce is %d bytes, want %d to %d random bytes", len(nonce), MinNonceSize, MaxNonceSize)
	}
	return nil
}

// SignHead signs the chain's end (seq, hash) with nonce at time t.
func SignHead(key ed25519.PrivateKey, seq uint64, hash [32]byte, t time.Time, nonce []byte) *Head {
	return &Head{
		AuditKey: key.Public().(ed25519.PublicKey), Seq: seq, Hash: hash, Time: t, Nonce: nonce,
		Sig: ed25519.Sign(key, HeadMessage(seq, hash, t, nonce)),
	}
}

// Verify checks the head's form and its signature under its own key. It
// says nothing about whose key that is: Verify (the log's) ties it to an
// attested boot.
func (h *Head) Verify() error {
	if len(h.AuditKey) != ed25519.PublicKeySize {
		return fmt.Errorf("audit_key is %d bytes, want %d", len(h.AuditKey), ed25519.PublicKeySize)
	}
	if err := CheckNonce(h.Nonce); err != nil {
		return err
	}
	if h.Time.IsZero() {
		return errors.New("no time")
	}
	if len(h.Sig) != ed25519.SignatureSize || !ed25519.Verify(h.AuditKey, HeadMessage(h.Seq, h.Hash, h.Time, h.Nonce), h.Sig) {
		return errors.New("the signature does not verify under its audit_key")
	}
	return nil
}

// Position orders a boot's records for reading them by cursor: entry
// seq s is at 2s, the checkpoint at s at 2s+1 (right after that entry),
// so a reader that has stored a record resumes at its position plus one.
func Position(r Record) uint64 {
	switch v := r.(type) {
	case *Entry:
		return 2 * v.Seq
	case *Checkpoint:
		return 2*v.Seq + 1
	}
	return 0
}
