package keyring

import (
	"encoding/hex"

	"golang.org/x/crypto/sha3"
)

// ethereumAddress returns the EIP-55 checksummed address of a secp256k1
// public key given as a 65-byte uncompressed point (0x04 ‖ X ‖ Y): the last
// 20 bytes of Keccak-256(X ‖ Y), hex, with each letter upper-cased when the
// matching nibble of Keccak-256(lowercase hex) is 8 or more.
func ethereumAddress(uncompressed []byte) string {
	h := sha3.NewLegacyKeccak256()
	h.Write(uncompressed[1:])
	addr := hex.EncodeToString(h.Sum(nil)[12:])

	h.Reset()
	h.Write([]byte(addr))
	sum := h.Sum(nil)
	out := []byte("0x" + addr)
	for i := range len(addr) {
		nibble := sum[i/2] >> 4
		if i%2 == 1 {
			nibble = sum[i/2] & 0x0f
		}
		if c := addr[i]; c >= 'a' && c <= 'f' && nibble >= 8 {
			out[2+i] = c - 'a' + 'A'
		}
	}
	return string(out)
}
