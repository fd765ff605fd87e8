package pcr

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestHexMapJSON(t *testing.T) {
	m := HexMap{}
	for _, i := range []int{10, 2, 0, 15, 1} {
		m[i] = []byte{byte(i), 0xab}
	}
	got, err := json.Marshal(struct {
		PCRs HexMap `json:"pcrs"`
	}{m})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"pcrs":{"0":"00ab","1":"01ab","2":"02ab","10":"0aab","15":"0fab"}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// It decodes as the plain map a client would use.
	var back map[string]map[string]string
	if err := json.Unmarshal(got, &back); err != nil || back["pcrs"]["10"] != "0aab" || len(back["pcrs"]) != 5 {
		t.Errorf("decoded %v, %v", back, err)
	}
	for _, tc := range []struct {
		m    HexMap
		want string
	}{{nil, "null"}, {HexMap{}, "{}"}, {HexMap{3: make([]byte, Size)}, `{"3":"` + strings.Repeat("00", Size) + `"}`}} {
		if got, err := json.Marshal(tc.m); err != nil || string(got) != tc.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tc.m, got, err, tc.want)
		}
	}
}
