package doctor

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

func TestParseDescribeEnclaves(t *testing.T) {
	list, err := ParseDescribeEnclaves(fixture(t, "nitro-cli/describe-debug.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("%d enclaves, want 1", len(list))
	}
	e := list[0]
	if e.EnclaveID != "i-1234567890abcdef0-enc0193a5b2c4d6e8f0" || e.EnclaveCID != 16 || e.State != StateRunning ||
		!e.Debug() || e.ProcessID != 4123 || e.NumberOfCPUs != 2 || len(e.CPUIDs) != 2 || e.MemoryMiB != 1024 || e.EnclaveName != "signer" {
		t.Errorf("parsed %+v", e)
	}
	if e.ImagePCR0() != pcr0v1 {
		t.Errorf("ImagePCR0 = %q, want the image's PCR0 even in debug mode", e.ImagePCR0())
	}
	empty, err := ParseDescribeEnclaves(fixture(t, "nitro-cli/describe-empty.json"))
	if err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("empty array: %v, %v", empty, err)
	}

	bad := []struct{ name, in, err string }{
		{"nothing", "  \n", "no output"},
		{"object", `{"EnclaveID": "x"}`, "want a JSON array"},
		{"progress text", "Start building the Enclave Image...\n[]", "want a JSON array"},
		{"no id", `[{"State": "RUNNING", "Flags": "NONE"}]`, "entry 0 has no EnclaveID"},
		{"guide's lowercase state", `[{"EnclaveID": "i-1-enc2", "State": "running", "Flags": "NONE"}]`, `State "running", want RUNNING, TERMINATING or EMPTY`},
		{"guide's Debug flag", `[{"EnclaveID": "i-1-enc2", "State": "RUNNING", "Flags": "Debug"}]`, `Flags "Debug", want NONE or DEBUG_MODE`},
		{"CID as string", `[{"EnclaveID": "i-1-enc2", "EnclaveCID": "16", "State": "RUNNING", "Flags": "NONE"}]`, "EnclaveCID"},
		{"truncated", `[{"EnclaveID": "i-1-enc2"`, "describe-enclaves:"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDescribeEnclaves([]byte(tt.in))
			if err == nil || got != nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("got %v, %v\nwant nil and an error containing %q", got, err, tt.err)
			}
		})
	}
}

func TestCheckNitroCLI(t *testing.T) {
	tests := []struct {
		name    string
		out     []byte
		err     error
		want    want
		running bool
	}{
		{name: "running", out: fixture(t, "nitro-cli/describe-running.json"), running: true,
			want: want{OK, "enclave i-1234567890abcdef0-enc0193a5b2c4d6e8f0 RUNNING, CID 16", ""}},
		{name: "debug", out: fixture(t, "nitro-cli/describe-debug.json"), running: true,
			want: want{Warning, "RUNNING in debug mode, CID 16: it attests an all-zero PCR0", "without --debug-mode"}},
		{name: "none", out: fixture(t, "nitro-cli/describe-empty.json"),
			want: want{Error, "no enclave running", "make run-enclave"}},
		{name: "terminating", out: fixture(t, "nitro-cli/describe-terminating.json"),
			want: want{Error, "is TERMINATING, none RUNNING", "nitro-cli run-enclave"}},
		{name: "not installed", err: fmt.Errorf("nitro-cli: %w", exec.ErrNotFound),
			want: want{Error, "nitro-cli not found on PATH", "aws-nitro-enclaves-cli"}},
		{name: "fails", err: errors.New("nitro-cli: exit status 1: [ E36 ] Failed to open device file"),
			want: want{Error, "describe-enclaves failed: nitro-cli: exit status 1: [ E36 ] Failed", "ne group"}},
		{name: "garbage", out: []byte("Segmentation fault"),
			want: want{Error, "cannot read nitro-cli's output", "nitro-cli --version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &fakeRunner{out: tt.out, err: tt.err}
			f := checkNitroCLI(context.Background(), &Config{Runner: r})
			checkResults(t, f.results, []want{tt.want})
			if (f.running != nil) != tt.running {
				t.Errorf("running enclave = %v, want one: %v", f.running, tt.running)
			}
			if len(r.calls) != 1 || r.calls[0] != "nitro-cli describe-enclaves" {
				t.Errorf("ran %q, want nitro-cli describe-enclaves once", r.calls)
			}
		})
	}
	t.Run("two running", func(t *testing.T) {
		one := strings.TrimSpace(string(fixture(t, "nitro-cli/describe-running.json")))
		two := one[:len(one)-1] + "," + strings.Replace(one[1:], "enc0193a5b2c4d6e8f0", "enc0193a5b2c4d6e8f1", 1)
		f := checkNitroCLI(context.Background(), &Config{Runner: &fakeRunner{out: []byte(two)}})
		checkResults(t, f.results, []want{{OK, "(2 enclaves running; doctor compares the first)", ""}})
		if f.running.EnclaveID != "i-1234567890abcdef0-enc0193a5b2c4d6e8f0" {
			t.Errorf("compared %s, want the first", f.running.EnclaveID)
		}
	})
	t.Run("no runner", func(t *testing.T) {
		checkResults(t, checkNitroCLI(context.Background(), &Config{}).results, []want{{Skipped, "no command runner", ""}})
	})
}

func TestExecRunner(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatalf("no sh: %v", err)
	}
	ctx := context.Background()
	out, err := ExecRunner{}.Run(ctx, "sh", "-c", "echo '[]'")
	if err != nil || string(out) != "[]\n" {
		t.Errorf("echo: %q, %v", out, err)
	}
	_, err = ExecRunner{}.Run(ctx, "sh", "-c", "echo first >&2; echo '[ E19 ] File operation failure' >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "exit status 3: [ E19 ] File operation failure") || strings.Contains(err.Error(), "first") {
		t.Errorf("failing command: %v\nwant the exit status and stderr's last line", err)
	}
	_, err = ExecRunner{}.Run(ctx, "doctor-test-no-such-command")
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("missing command: %v, want exec.ErrNotFound", err)
	}
	_, err = ExecRunner{}.Run(ctx, "sh", "-c", fmt.Sprintf("head -c %d /dev/zero", maxCommandOutput+10))
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized output: %v", err)
	}
}
