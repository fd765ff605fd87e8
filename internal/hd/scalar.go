package hd

import (
	"encoding/binary"
	"math/bits"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// Scalar arithmetic modulo the group order n, for private child keys
// (k_i = parse256(I_L) + k_par mod n) and the validity checks of SLIP-10
// (0 < k < n). secp256k1 uses decred's ModNScalar, constant time. P-256
// has no scalar API in the standard library (crypto/internal/fips140/nistec
// is not importable, and math/big is variable-time), so p256Order below is
// four 64-bit limbs with branch-free addition and comparison, checked
// against math/big in TestP256ScalarsMatchBigInt.

// limbs256 is a 256-bit number, least significant limb first.
type limbs256 [4]uint64

// p256N is the order of the P-256 group (FIPS 186-5 / SEC 2).
var p256N = limbsFromBytes(&[32]byte{
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
})

func limbsFromBytes(b *[32]byte) limbs256 {
	return limbs256{
		binary.BigEndian.Uint64(b[24:]), binary.BigEndian.Uint64(b[16:]),
		binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[0:]),
	}
}

func (l *limbs256) putBytes(b *[32]byte) {
	binary.BigEndian.PutUint64(b[24:], l[0])
	binary.BigEndian.PutUint64(b[16:], l[1])
	binary.BigEndian.PutUint64(b[8:], l[2])
	binary.BigEndian.PutUint64(b[0:], l[3])
}

// sub returns a - b and the borrow (1 when a < b).
func (a *limbs256) sub(b *limbs256) (d limbs256, borrow uint64) {
	d[0], borrow = bits.Sub64(a[0], b[0], 0)
	d[1], borrow = bits.Sub64(a[1], b[1], borrow)
	d[2], borrow = bits.Sub64(a[2], b[2], borrow)
	d[3], borrow = bits.Sub64(a[3], b[3], borrow)
	return d, borrow
}

// isZero is 1 when every limb is 0, else 0, without branches.
func (a *limbs256) isZero() uint64 {
	v := a[0] | a[1] | a[2] | a[3]
	return 1 ^ ((v | -v) >> 63)
}

// p256ValidScalar reports 0 < k < n.
func p256ValidScalar(k *[32]byte) bool {
	l := limbsFromBytes(k)
	_, lt := l.sub(&p256N)
	ok := lt &^ l.isZero()
	clear(l[:])
	return ok == 1
}

// p256AddScalars sets out = il + k mod n and reports whether the result
// is a valid child key: il < n and the sum is not 0 (SLIP-10 step 5). k
// must already be valid. On false, out is zeroed.
func p256AddScalars(il, k, out *[32]byte) bool {
	a, b := limbsFromBytes(il), limbsFromBytes(k)
	_, ilLess := a.sub(&p256N)
	var s limbs256
	var carry uint64
	s[0], carry = bits.Add64(a[0], b[0], 0)
	s[1], carry = bits.Add64(a[1], b[1], carry)
	s[2], carry = bits.Add64(a[2], b[2], carry)
	s[3], carry = bits.Add64(a[3], b[3], carry)
	// s < 2n < 2^257: subtract n once when the sum overflowed 2^256 or
	// is at least n.
	t, borrow := s.sub(&p256N)
	mask := -(carry | (1 ^ borrow))
	var r limbs256
	for i := range r {
		r[i] = t[i]&mask | s[i]&^mask
	}
	ok := ilLess &^ r.isZero()
	r.putBytes(out)
	if ok != 1 {
		clear(out[:])
	}
	clear(a[:])
	clear(b[:])
	clear(s[:])
	clear(t[:])
	clear(r[:])
	return ok == 1
}

// secp256k1ValidScalar reports 0 < k < n.
func secp256k1ValidScalar(k *[32]byte) bool {
	var s secp256k1.ModNScalar
	overflow := s.SetBytes(k)
	ok := overflow == 0 && !s.IsZero()
	s.Zero()
	return ok
}

// secp256k1AddScalars is p256AddScalars for secp256k1.
func secp256k1AddScalars(il, k, out *[32]byte) bool {
	var a, b secp256k1.ModNScalar
	overflow := a.SetBytes(il)
	b.SetBytes(k)
	a.Add(&b)
	ok := overflow == 0 && !a.IsZero()
	a.PutBytes(out)
	if !ok {
		clear(out[:])
	}
	a.Zero()
	b.Zero()
	return ok
}
