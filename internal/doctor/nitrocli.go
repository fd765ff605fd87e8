package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// maxCommandOutput bounds what a command may print before doctor stops
// reading: describe-enclaves of the largest instance is a few KiB.
const maxCommandOutput = 1 << 20

// ExecRunner runs commands with os/exec. Standard error is kept for the
// error message (its last line, bounded), never for parsing.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	stdout := &limitedBuffer{max: maxCommandOutput}
	stderr := &limitedBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg != "" {
			return stdout.Bytes(), fmt.Errorf("%s: %w: %s", name, err, oneLine(msg, 300))
		}
		return stdout.Bytes(), fmt.Errorf("%s: %w", name, err)
	}
	if stdout.overflow {
		return nil, fmt.Errorf("%s: more than %d bytes of output", name, maxCommandOutput)
	}
	return stdout.Bytes(), nil
}

// limitedBuffer keeps the first max bytes written to it. It is not a
// bytes.Buffer, whose ReadFrom io.Copy would use instead of Write.
type limitedBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := b.max - b.buf.Len(); len(p) > room {
		p = p[:max(room, 0)]
		b.overflow = true
	}
	b.buf.Write(p)
	return n, nil
}

func (b *limitedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *limitedBuffer) String() string { return b.buf.String() }

// Enclave is one entry of `nitro-cli describe-enclaves` (an array of
// these). Fields nitro-cli prints only with --metadata are not kept.
type Enclave struct {
	EnclaveName  string            `json:"EnclaveName"`
	EnclaveID    string            `json:"EnclaveID"`
	ProcessID    int64             `json:"ProcessID"`
	EnclaveCID   uint64            `json:"EnclaveCID"`
	NumberOfCPUs int64             `json:"NumberOfCPUs"`
	CPUIDs       []int64           `json:"CPUIDs"`
	MemoryMiB    int64             `json:"MemoryMiB"`
	State        string            `json:"State"`
	Flags        string            `json:"Flags"`
	Measurements map[string]string `json:"Measurements"`
}

// Enclave states and flags as nitro-cli prints them (its code, not its
// user guide, which shows "running" and "Debug").
const (
	StateRunning     = "RUNNING"
	StateTerminating = "TERMINATING"
	StateEmpty       = "EMPTY"
	FlagsNone        = "NONE"
	FlagsDebugMode   = "DEBUG_MODE"
)

// Debug reports whether the enclave runs in debug mode.
func (e *Enclave) Debug() bool { return e.Flags == FlagsDebugMode }

// ImagePCR0 is the PCR0 describe-enclaves prints: the image's, even for a
// debug enclave, whose attestation documents carry zeros instead.
func (e *Enclave) ImagePCR0() string { return strings.ToLower(e.Measurements["PCR0"]) }

// ParseDescribeEnclaves reads the JSON array `nitro-cli describe-enclaves`
// prints. Each entry must have an EnclaveID and a known State and Flags.
func ParseDescribeEnclaves(data []byte) ([]Enclave, error) {
	if len(data) > maxCommandOutput {
		return nil, fmt.Errorf("describe-enclaves: %d bytes, more than %d", len(data), maxCommandOutput)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("describe-enclaves: no output, want a JSON array")
	}
	if trimmed[0] != '[' {
		return nil, fmt.Errorf("describe-enclaves: output starts with %q, want a JSON array", oneLine(string(trimmed[:min(len(trimmed), 20)]), 20))
	}
	var out []Enclave
	if err := json.Unmarshal(trimmed, &out); err != nil {
		return nil, fmt.Errorf("describe-enclaves: %v", err)
	}
	for i, e := range out {
		switch {
		case e.EnclaveID == "":
			return nil, fmt.Errorf("describe-enclaves: entry %d has no EnclaveID", i)
		case e.State != StateRunning && e.State != StateTerminating && e.State != StateEmpty:
			return nil, fmt.Errorf("describe-enclaves: entry %d: State %q, want RUNNING, TERMINATING or EMPTY", i, oneLine(e.State, 40))
		case e.Flags != FlagsNone && e.Flags != FlagsDebugMode:
			return nil, fmt.Errorf("describe-enclaves: entry %d: Flags %q, want NONE or DEBUG_MODE", i, oneLine(e.Flags, 40))
		}
	}
	if out == nil {
		out = []Enclave{}
	}
	return out, nil
}

type nitroFacts struct {
	results []Result
	running *Enclave // the first RUNNING enclave, nil when none
}

const runEnclaveFix = "start it: make run-enclave, or nitro-cli run-enclave --eif-path signer.eif --cpu-count 2 --memory 512 --enclave-cid 16 (add --debug-mode only for development)"

func checkNitroCLI(ctx context.Context, cfg *Config) nitroFacts {
	res := func(s Status, fix, format string, a ...any) Result {
		return Result{Check: CheckNitroCLI, Status: s, Message: fmt.Sprintf(format, a...), Fix: fix}
	}
	if cfg.Runner == nil {
		return nitroFacts{results: []Result{res(Skipped, "", "no command runner configured")}}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	out, err := cfg.Runner.Run(ctx, "nitro-cli", "describe-enclaves")
	if errors.Is(err, exec.ErrNotFound) {
		return nitroFacts{results: []Result{res(Error,
			"install the AWS Nitro Enclaves CLI (Amazon Linux: sudo dnf install aws-nitro-enclaves-cli), then sudo systemctl enable --now nitro-enclaves-allocator; the instance must have enclaves enabled",
			"nitro-cli not found on PATH")}}
	}
	if err != nil {
		return nitroFacts{results: []Result{res(Error,
			"run nitro-cli describe-enclaves yourself: the user needs the ne group (sudo usermod -aG ne $USER, then log in again) and nitro-enclaves-allocator must be running",
			"nitro-cli describe-enclaves failed: %s", oneLine(err.Error(), 400))}}
	}
	cfg.log().Debug("nitro-cli describe-enclaves", "bytes", len(out))
	list, err := ParseDescribeEnclaves(out)
	if err != nil {
		return nitroFacts{results: []Result{res(Error,
			"check the nitro-cli version (nitro-cli --version); doctor reads the JSON of aws-nitro-enclaves-cli 1.x",
			"cannot read nitro-cli's output: %v", err)}}
	}
	if len(list) == 0 {
		return nitroFacts{results: []Result{res(Error, runEnclaveFix, "no enclave running (describe-enclaves printed [])")}}
	}
	var running []*Enclave
	for i := range list {
		if list[i].State == StateRunning {
			running = append(running, &list[i])
		}
	}
	if len(running) == 0 {
		e := list[0]
		return nitroFacts{results: []Result{res(Error,
			"wait for it to finish terminating, then "+runEnclaveFix+"; nitro-cli console --enclave-id ID (debug mode) or the enclave's own logs say why it stopped",
			"enclave %s is %s, none RUNNING", e.EnclaveID, e.State)}}
	}
	e := running[0]
	facts := nitroFacts{running: e}
	more := ""
	if len(running) > 1 {
		more = fmt.Sprintf(" (%d enclaves running; doctor compares the first)", len(running))
	}
	if e.Debug() {
		facts.results = append(facts.results, res(Warning,
			"development only: for production start the enclave without --debug-mode (nitro-cli terminate-enclave --enclave-id "+e.EnclaveID+", then run-enclave without it)",
			"enclave %s %s in debug mode, CID %d: it attests an all-zero PCR0 and its console is readable from the parent%s", e.EnclaveID, e.State, e.EnclaveCID, more))
	} else {
		facts.results = append(facts.results, res(OK, "", "enclave %s %s, CID %d%s", e.EnclaveID, e.State, e.EnclaveCID, more))
	}
	return facts
}
