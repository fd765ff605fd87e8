//go:build unix

package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestCheckDevFiles: every combination of present and missing files among
// kms-state.json, identity.enc, recipient.txt and keyring.age. Four are
// consistent (nothing yet; the key alone; key, identity and recipient,
// whose keyring signer dev makes anew; all four); every other one is
// refused, naming exactly the files to remove together.
func TestCheckDevFiles(t *testing.T) {
	files := []string{"kms-state.json", "identity.enc", "recipient.txt", "keyring.age"}
	// toRemove is what the message must name, for the refused sets.
	toRemove := func(present []string) []string {
		has := func(n string) bool { return slices.Contains(present, n) }
		keep := func(names ...string) []string {
			var out []string
			for _, n := range names {
				if has(n) {
					out = append(out, n)
				}
			}
			return out
		}
		switch {
		case !has("kms-state.json") && len(present) > 0:
			return keep("identity.enc", "recipient.txt", "keyring.age")
		case !has("identity.enc") && (has("recipient.txt") || has("keyring.age")):
			return keep("recipient.txt", "keyring.age")
		case has("identity.enc") && !has("recipient.txt"):
			return keep("identity.enc", "keyring.age")
		}
		return nil
	}
	consistent := 0
	for mask := range 1 << len(files) {
		var present []string
		for i, f := range files {
			if mask&(1<<i) != 0 {
				present = append(present, f)
			}
		}
		t.Run(strings.Join(append([]string{"with"}, present...), "_"), func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range present {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := checkDevFiles(dir)
			want := toRemove(present)
			if want == nil {
				consistent++
				if err != nil {
					t.Fatalf("refused a consistent directory: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %v", present)
			}
			paths := make([]string, len(want))
			for i, n := range want {
				paths[i] = filepath.Join(dir, n)
			}
			for _, s := range []string{"rm " + strings.Join(paths, " ") + ")", "rm -rf " + dir} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message does not say %q:\n%v", s, err)
				}
			}
			for _, f := range files {
				if !slices.Contains(present, f) && strings.Contains(err.Error(), "rm "+filepath.Join(dir, f)) {
					t.Errorf("message removes %s, which is not there:\n%v", f, err)
				}
			}
			// Nothing was changed.
			ents, _ := os.ReadDir(dir)
			if len(ents) != len(present) {
				t.Errorf("the check changed the directory: %d entries, want %d", len(ents), len(present))
			}
		})
	}
	if consistent != 4 {
		t.Errorf("%d consistent combinations, want 4", consistent)
	}

	// An empty keyring.age is refused too, saying how to get a new one.
	dir := t.TempDir()
	for _, f := range files[:3] {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "keyring.age"), nil, 0o600)
	if err := checkDevFiles(dir); err == nil || !strings.Contains(err.Error(), "keyring.age is empty (0 bytes), so it holds no keys: remove it") {
		t.Errorf("empty keyring.age: %v", err)
	}
}

func TestCheckNoKeyNoFiles(t *testing.T) {
	dir := t.TempDir()
	if err := checkNoKeyNoFiles(dir); err != nil {
		t.Fatalf("empty directory: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "recipient.txt"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "keyring.age"), []byte("x"), 0o600)
	err := checkNoKeyNoFiles(dir)
	want := "rm " + filepath.Join(dir, "recipient.txt") + " " + filepath.Join(dir, "keyring.age") + ")"
	if err == nil || !strings.Contains(err.Error(), "holds no key with alias "+devKeyAlias) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to name the alias and say %q", err, want)
	}
}

func TestCheckExtraKeyrings(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.age")
	os.WriteFile(empty, nil, 0o600)
	full := filepath.Join(dir, "full.age")
	os.WriteFile(full, []byte("age-encryption.org/v1 …"), 0o600)
	for _, tc := range []struct {
		keyrings []string
		want     []string
	}{
		{[]string{full}, nil},
		{[]string{full, empty}, []string{"--keyring " + empty + " is empty (0 bytes), so it holds no keys", "signer keyring new --recipient-file " + filepath.Join(dir, "recipient.txt")}},
		{[]string{filepath.Join(dir, "nope.age")}, []string{"dev: --keyring " + filepath.Join(dir, "nope.age") + ": no such file or directory"}},
		{[]string{dir}, []string{"is a directory"}},
	} {
		err := checkExtraKeyrings(dir, tc.keyrings)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%v: %v", tc.keyrings, err)
			}
			continue
		}
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: err = %v, want it to contain %q", tc.keyrings, err, w)
			}
		}
	}
}

// TestStatusFromAnotherShim: a /v1/status answered by a shim with another
// instance label, or none (an older or foreign process), is not this
// stack's: status says so instead of reporting its state.
func TestStatusFromAnotherShim(t *testing.T) {
	answer := `{"state":"ready","shim":{"instance":"dev-other"}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(answer)) }))
	defer srv.Close()
	s := &devStack{httpURL: srv.URL, instance: "dev-mine"}
	for _, a := range []string{`{"state":"ready","shim":{"instance":"dev-other"}}`, `{"state":"ready","shim":{}}`, `{"state":"ready"}`} {
		answer = a
		st, err := s.status(srv.Client())
		var fe *foreignShimError
		if !errors.As(err, &fe) || st != nil {
			t.Fatalf("answer %s: status %v, err %v; want a foreignShimError", a, st, err)
		}
		if !strings.Contains(err.Error(), "not as this start's shim (dev-mine)") || !strings.Contains(err.Error(), "another process listens there") {
			t.Errorf("message: %v", err)
		}
	}
	answer = `{"state":"ready","shim":{"instance":"dev-mine"}}`
	if st, err := s.status(srv.Client()); err != nil || st.State != "ready" {
		t.Fatalf("own shim: %v %v", st, err)
	}
}

// TestDevLock: a second lock on the same directory fails at once, naming
// the holder's pid; released, it can be taken again.
func TestDevLock(t *testing.T) {
	dir := t.TempDir()
	l, err := lockDevDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDevDir(dir); err == nil || err.Error() != dir+" is in use by signer dev (pid "+itoa(os.Getpid())+"); stop it or use --dir" {
		t.Fatalf("second lock: %v", err)
	}
	l.release()
	l2, err := lockDevDir(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.release()
}

func itoa(n int) string { return strconv.Itoa(n) }
