package shim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/enclave-signer/enclave-signer/pkg/wire"
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
