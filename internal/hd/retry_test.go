package hd

import (
	"encoding/binary"
	"testing"
)

// TestP256RetryVectorsRetry: the two P-256 retry vectors of SLIP-10 do
// reach the retry branches (so that TestSLIP10Vectors tests them): the
// first HMAC of the seed-retry seed is not a valid key, and the first I_L
// of m/28578'/33941 is not below n, so that step retries in private and in
// public derivation alike. (The hardened step before it needs no retry;
// hardened and normal steps share the retry loop, only their first HMAC
// input differs.)
func TestP256RetryVectorsRetry(t *testing.T) {
	i := hmacSHA512(P256.hmacKey(), unhex(t, "a7305bc8df8d0951f0cb224c0e95d7707cbdf2c6ce7e8d481fec69c7ff5e9446"))
	if P256.validScalar((*[32]byte)(i[:32])) {
		t.Error("the seed-retry vector's first I_L is a valid key: the vector does not test the master retry")
	}
	master, err := NewMasterKey(P256, unhex(t, "000102030405060708090a0b0c0d0e0f"))
	if err != nil {
		t.Fatal(err)
	}
	firstIL := func(k *ExtendedKey, idx uint32) *[32]byte {
		var ser [4]byte
		binary.BigEndian.PutUint32(ser[:], idx)
		var I [64]byte
		if Hardened(idx) {
			I = hmacSHA512(k.chainCode[:], []byte{0}, k.key[:], ser[:])
		} else {
			I = hmacSHA512(k.chainCode[:], k.pub[:], ser[:])
		}
		return (*[32]byte)(I[:32])
	}
	child, err := master.Child(28578 | HardenedOffset)
	if err != nil {
		t.Fatal(err)
	}
	if p256LessThanN(firstIL(child, 33941)) {
		t.Error("m/28578'/33941's first I_L is below n: the vector does not test the normal retry")
	}
}
