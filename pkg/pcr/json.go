package pcr

import (
	"bytes"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
)

// HexMap is a set of PCR values by register index, rendered in JSON as an
// object keyed by the decimal index with lowercase hex values, in numeric
// order: {"0": "…", "1": "…", "2": "…", …, "10": "…"}. (encoding/json
// writes a map's keys in string order, "10" before "2", which is valid but
// not what an operator scanning PCRs expects.) A nil HexMap is null.
type HexMap map[int][]byte

// MarshalJSON renders m in numeric key order.
func (m HexMap) MarshalJSON() ([]byte, error) {
	if m == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for n, i := range slices.Sorted(maps.Keys(m)) {
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(strconv.Itoa(i))
		b.WriteString(`":"`)
		b.WriteString(hex.EncodeToString(m[i]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
