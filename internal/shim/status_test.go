package shim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// PCRs come out of /v1/status in numeric order, as the enclave has them.
func TestStatusPCRsInNumericOrder(t *testing.T) {
	st := &wire.Status{State: wire.StateReady, PCRs: map[uint16][]byte{}}
	for _, i := range []uint16{15, 10, 2, 1, 0, 4, 3} {
		st.PCRs[i] = []byte{byte(i)}
	}
	b, err := json.Marshal(renderStatus(st, shimState{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := `"pcrs":{"0":"00","1":"01","2":"02","3":"03","4":"04","10":"0a","15":"0f"}`
	if !strings.Contains(string(b), want) {
		t.Errorf("status JSON %s\nwant it to contain %s", b, want)
	}
}

// /v1/status says whether signerd is pinned, always, and its pins when it
// is.
func TestStatusPins(t *testing.T) {
	const arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	for _, tc := range []struct {
		st        wire.Status
		want, not string
	}{
		{wire.Status{State: wire.StateReady}, `"pinned":false`, `"pins"`},
		{wire.Status{State: wire.StateReady, Pinned: true, Pins: &wire.Pins{KMSKeys: []string{arn}}}, `"pinned":true,"pins":{"kms_keys":["` + arn + `"]}`, "\x00"},
	} {
		b, err := json.Marshal(renderStatus(&tc.st, shimState{}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), tc.want) || strings.Contains(string(b), tc.not) {
			t.Errorf("status JSON %s\nwant %s and no %s", b, tc.want, tc.not)
		}
	}
}
