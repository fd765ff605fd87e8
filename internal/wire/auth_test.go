package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// TestAuthFieldsRoundTrip: the fields authentication added (Error's
// retry_after_ms, Status's auth, Pins's require_auth) go through a frame
// and back, and are left out when empty, so that an older peer's frames
// are unchanged.
func TestAuthFieldsRoundTrip(t *testing.T) {
	for _, m := range []Message{
		&Error{Code: CodeRateLimited, Message: `key "eth": rate 5/s spent`, RetryAfterMillis: 180},
		&Status{State: StateReady, Attestation: AttestationNSM, Keys: 2,
			Pins: &Pins{KMSKeys: []string{"arn:aws:kms:eu-west-1:111122223333:key/x"}, RequireAuth: true},
			Auth: &AuthStatus{RequireAuth: true, Policed: true, Clients: 2, Audiences: []string{"payments-prod"}, ClockOK: true,
				ClockSkewMillis: -12, ClockChecked: 1700000000, NonceCacheSize: 3, NonceCacheCapacity: 1 << 20,
				Unauthenticated: 1, Forbidden: 2, RateLimited: 3, AuthUnavailable: 4}},
	} {
		body, err := Marshal(9, m)
		if err != nil {
			t.Fatal(err)
		}
		_, back, err := Unmarshal(body)
		if err != nil || !reflect.DeepEqual(back, m) {
			t.Errorf("%s round trip: %v\n got %#v\nwant %#v", m.MessageType(), err, back, m)
		}
	}
	plain, _ := Marshal(7, &Error{Code: CodeUnknownKey, Message: "x"})
	if bytes.Contains(plain, []byte{0x03, 0x00}) || len(plain) != 3+1+2+3 {
		t.Errorf("an error without retry_after_ms encodes as %x: the empty field should be left out", plain)
	}
	if !errors.Is(&Error{Code: CodeRateLimited, Message: "m", RetryAfterMillis: 5}, ErrRateLimited) {
		t.Error("a rate_limited error does not match ErrRateLimited")
	}
}
