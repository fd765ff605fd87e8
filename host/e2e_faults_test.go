//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// The fault tests of issue 9 on the real binaries under signer dev: the
// KMS emulator stopped (SIGSTOP) and unreachable (SIGUSR1) during
// provisioning, KMS throttling, instance-role credentials that expire.
// (signerd killed under load is TestDevSignerdKilledUnderLoad.) Bounds
// are generous, for a loaded 2-core machine: they catch a hang or a
// missing retry, not slowness.

// fullStatus is /v1/status with the shim's own section.
type fullStatus struct {
	State string          `json:"state"`
	Keys  int             `json:"keys"`
	Error json.RawMessage `json:"error"`
	Shim  struct {
		LastAttempt           *time.Time `json:"last_attempt"`
		LastSuccess           *time.Time `json:"last_success"`
		LastError             string     `json:"last_error"`
		NextAttempt           *time.Time `json:"next_attempt"`
		CredentialsExpiration *time.Time `json:"credentials_expiration"`
		Connects              uint64     `json:"enclave_connects"`
	} `json:"shim"`
}

func (p *devProc) fullStatus() fullStatus {
	p.t.Helper()
	var st fullStatus
	if code, err := p.getJSON("/v1/status", &st); code != 200 || err != nil {
		p.t.Fatalf("GET /v1/status: %d %v", code, err)
	}
	return st
}

// state is the enclave's state from /v1/status, or "unreachable (503)"
// while the shim cannot reach it (a restart).
func (p *devProc) state() string {
	var st fullStatus
	code, err := p.getJSON("/v1/status", &st)
	if code != 200 || err != nil {
		return fmt.Sprintf("unreachable (%d %v)", code, err)
	}
	return st.State
}

// waitUntil polls cond every 20 ms until it holds, failing the test after
// bound.
func waitUntil(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logFile returns DIR/logs/NAME.log.
func logFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "logs", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// jsonLog returns the JSON lines of DIR/logs/NAME.log (the shim's and
// signerd's) whose msg is msg, in order.
func jsonLog(t *testing.T, dir, name, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logFile(t, dir, name)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// logTime is a JSON log line's time.
func logTime(t *testing.T, m map[string]any) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"]))
	if err != nil {
		t.Fatalf("log line without a time: %v", m)
	}
	return ts
}

// since keeps the lines logged at or after t0.
func since(t *testing.T, lines []map[string]any, t0 time.Time) []map[string]any {
	var out []map[string]any
	for _, m := range lines {
		if !logTime(t, m).Before(t0) {
			out = append(out, m)
		}
	}
	return out
}

// signOK signs once through the shim and fails the test unless it works.
func (p *devProc) signOK(what string) {
	p.t.Helper()
	if code, _, body := p.sign("dev-p256", "message", []byte(what)); code != 200 {
		p.t.Fatalf("signing %s: %d %s", what, code, body)
	}
}

// TestDevKMSStoppedDuringProvisioning: the KMS emulator stopped (SIGSTOP:
// it accepts connections and answers nothing, as a KMS that hangs) while
// the shim provisions a restarted signerd. The provisioning waits on KMS
// (signerd's KMS client allows 30 s for an answer and 60 s for a call,
// so a short stop fails nothing), signing answers 503 not_ready
// meanwhile, and once the emulator continues the waiting request is
// answered: ready at once, with no failed attempt and no backoff.
func TestDevKMSStoppedDuringProvisioning(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	emu := p.pids["kms-emulator"]
	if err := syscall.Kill(emu, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resume := sync.OnceFunc(func() { syscall.Kill(emu, syscall.SIGCONT) })
	t.Cleanup(resume) // before signer dev is stopped: cleanups run last first
	killed := time.Now()
	if err := syscall.Kill(p.pids["signerd"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.waitRestart(1, 30*time.Second)
	waitUntil(t, 30*time.Second, "provisioning of the restarted signerd", func() bool {
		if p.state() != "provisioning" {
			return false
		}
		st := p.fullStatus()
		return st.Shim.LastAttempt != nil && st.Shim.LastAttempt.After(killed)
	})
	time.Sleep(2 * time.Second) // KMS stays stopped a while
	if st := p.fullStatus(); st.State != "provisioning" {
		t.Fatalf("with KMS stopped, the enclave is %s %s, want still provisioning", st.State, st.Error)
	}
	if code, _, body := p.sign("dev-p256", "message", []byte("KMS stopped")); code != 503 || !strings.Contains(string(body), "not_ready") {
		t.Fatalf("signing while the enclave waits on KMS: %d %s, want 503 not_ready", code, body)
	}

	resumed := time.Now()
	resume()
	const bound = 15 * time.Second // the answer is immediate; the rest is margin
	waitUntil(t, bound, "ready enclave after the emulator continued", func() bool { return p.state() == "ready" })
	t.Logf("ready %v after the emulator continued", time.Since(resumed).Round(time.Millisecond))
	p.signOK("after KMS continued")
	if fails := since(t, jsonLog(t, dir, "shim", "provisioning failed"), killed); len(fails) > 0 {
		t.Errorf("the shim logged %d failed provisionings while KMS was stopped, want none (the call waits): %v", len(fails), fails)
	}
	// signer dev copies signerd's output into its log as it comes: the
	// line may land a moment after the status says ready.
	provisioned := func() int { return len(since(t, jsonLog(t, dir, "signerd", "provisioned"), killed)) }
	waitUntil(t, 10*time.Second, "signerd's log line for the provisioning", func() bool { return provisioned() >= 1 })
	if n := provisioned(); n != 1 {
		t.Errorf("signerd provisioned %d times after the restart, want 1: the request that waited", n)
	}
}

// TestDevKMSUnreachable: the KMS emulator's listener gone (SIGUSR1:
// connections refused at the TLS front, as when KMS cannot be reached)
// while the shim provisions a restarted signerd. signerd's KMS client
// retries within each provisioning; each fails; the shim retries with
// backoff that doubles (1 s, 2 s, 4 s, as status next_attempt shows); once
// the emulator listens again (SIGUSR2) the enclave is ready within the
// current backoff step (or signerd's longest pause between attempts, 10
// s, if an attempt is under way), plus a margin.
func TestDevKMSUnreachable(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	emu := p.pids["kms-emulator"]
	if err := syscall.Kill(emu, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "KMS down in the emulator's log", func() bool {
		return strings.Contains(logFile(t, dir, "kms-emulator"), "KMS down on purpose (SIGUSR1)")
	})
	killed := time.Now()
	if err := syscall.Kill(p.pids["signerd"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.waitRestart(1, 30*time.Second)
	// Failed provisionings, each after signerd's KMS client retried the
	// refused connection, until the shim's backoff has doubled twice. (A
	// new connection to the enclave resets the backoff, as after a
	// restart; the shim's pool opens its second one lazily, so the first
	// step can come twice.)
	var fails []map[string]any
	waitUntil(t, 90*time.Second, "a third failure in a row", func() bool {
		fails = since(t, jsonLog(t, dir, "shim", "provisioning failed"), killed)
		return len(fails) > 0 && fails[len(fails)-1]["failures"].(float64) >= 3
	})
	for i, f := range fails {
		n := int(f["failures"].(float64))
		if wantStep := time.Second << (n - 1); time.Duration(f["retry_in"].(float64)) != wantStep { // provision_retry_min 1 s, doubling
			t.Errorf("failed provisioning %d: %d failures, retry in %v; want %v", i+1, n, time.Duration(f["retry_in"].(float64)), wantStep)
		}
	}
	st := p.fullStatus()
	if st.State != "failed" && st.State != "provisioning" {
		t.Errorf("with KMS unreachable the enclave is %s, want failed (or provisioning again)", st.State)
	}
	if st.State != "provisioning" && (st.Shim.NextAttempt == nil || st.Shim.LastAttempt == nil || !st.Shim.NextAttempt.After(*st.Shim.LastAttempt)) {
		t.Errorf("status shim.next_attempt %v after last_attempt %v: want the next automatic attempt scheduled", st.Shim.NextAttempt, st.Shim.LastAttempt)
	}
	if !strings.Contains(st.Shim.LastError, "kms_decrypt") {
		t.Errorf("shim.last_error %q does not name the KMS step", st.Shim.LastError)
	}
	if !strings.Contains(logFile(t, dir, "tls-front"), "connection refused") {
		t.Errorf("the TLS front never saw the emulator refuse a connection:\n%s", logFile(t, dir, "tls-front"))
	}
	// The current backoff step, as the status tells it.
	step := time.Second
	if st.State != "provisioning" && st.Shim.NextAttempt != nil && st.Shim.LastAttempt != nil {
		step = max(step, st.Shim.NextAttempt.Sub(*st.Shim.LastAttempt))
	}
	if n := len(fails); n > 0 {
		step = max(step, time.Duration(fails[n-1]["retry_in"].(float64)))
	}

	back := time.Now()
	if err := syscall.Kill(emu, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	bound := max(step, 10*time.Second) + 15*time.Second
	waitUntil(t, bound, "ready enclave after KMS came back", func() bool { return p.state() == "ready" })
	t.Logf("%d failed provisionings while KMS was unreachable; ready %v after it came back (backoff step %v, bound %v)",
		len(since(t, jsonLog(t, dir, "shim", "provisioning failed"), killed)), time.Since(back).Round(time.Millisecond), step, bound)
	p.signOK("after KMS came back")
}

// TestDevKMSThrottled: signer dev --kms-throttle 0.9. The emulator
// answers nine requests in ten with ThrottlingException, evenly; signer
// dev's own setup retries past them, so each of its calls ends on a
// served request, and signerd's first provisioning then meets five
// throttles in a row: its KMS client retries all five, fails, the shim
// backs off and provisions again, and that one's fifth attempt is served.
func TestDevKMSThrottled(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir, "--kms-throttle", "0.9")
	if !strings.Contains(p.out.String(), "KMS throttling: 0.9 of requests answered ThrottlingException") {
		t.Errorf("signer dev does not announce the throttling:\n%s", p.out.String())
	}
	waitUntil(t, 60*time.Second, "ready enclave", func() bool { return p.state() == "ready" })
	p.signOK("with KMS throttling")

	emuLog := logFile(t, dir, "kms-emulator")
	throttled := regexp.MustCompile(`request throttled.*op=Decrypt`).FindAllString(emuLog, -1)
	served := regexp.MustCompile(`msg="kms request".*op=Decrypt`).FindAllString(emuLog, -1)
	if len(throttled) < 5 || len(served) != 1 {
		t.Errorf("Decrypt: %d throttled, %d served; want at least 5 throttled (retried) and 1 served", len(throttled), len(served))
	}
	callFailed := jsonLog(t, dir, "signerd", "kms call failed")
	if len(callFailed) == 0 || !strings.Contains(fmt.Sprint(callFailed[0]["error"]), "exceeded maximum number of attempts, 5") ||
		!strings.Contains(fmt.Sprint(callFailed[0]["error"]), "ThrottlingException") {
		t.Errorf("signerd's KMS client did not retry five throttled attempts: %v", callFailed)
	}
	fails := jsonLog(t, dir, "shim", "provisioning failed")
	if len(fails) != 1 || !strings.Contains(fmt.Sprint(fails[0]["err"]), "ThrottlingException") || fails[0]["failures"] != float64(1) {
		t.Errorf("the shim's failed provisionings: %v; want one, throttled, then backoff", fails)
	}
	if n := len(jsonLog(t, dir, "shim", "enclave provisioned")); n != 1 {
		t.Errorf("%d successful provisionings, want 1", n)
	}
	if st := p.fullStatus(); st.Error != nil && string(st.Error) != "null" {
		t.Errorf("ready with an error: %s", st.Error)
	}
}

// processEnv is a process's environment as /proc shows it (Linux), or nil
// where there is no /proc.
func processEnv(t *testing.T, pid int) map[string]string {
	t.Helper()
	if runtime.GOOS != "linux" {
		return nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			env[k] = v
		}
	}
	return env
}

// TestDevCredentialsRotate: signer dev --imds-credentials 20s. The shim
// takes instance-role credentials from the emulator's IMDS (no static
// keys in its environment, metadata at loopback), pushes them, and
// before each set expires pushes the next; under load through the HTTP
// API across at least two refreshes every request succeeds, and KMS never
// sees an expired token.
func TestDevCredentialsRotate(t *testing.T) {
	const lifetime = 20 * time.Second
	dir := t.TempDir()
	p := startDev(t, dir, "--imds-credentials", lifetime.String())
	imdsURL, _ := os.ReadFile(filepath.Join(dir, "imds-endpoint"))
	if !strings.HasPrefix(string(imdsURL), "http://127.0.0.1:") {
		t.Fatalf("imds-endpoint %q: want the emulator's IMDS on loopback", imdsURL)
	}
	if !strings.Contains(p.out.String(), "Credentials:    the shim's come from the emulator's IMDS") {
		t.Errorf("the summary does not say where the shim's credentials come from:\n%s", p.out.String())
	}
	if env := processEnv(t, p.pids["shim"]); env != nil {
		if _, ok := env["AWS_ACCESS_KEY_ID"]; ok {
			t.Errorf("the shim's environment has static keys: AWS_ACCESS_KEY_ID=%s", env["AWS_ACCESS_KEY_ID"])
		}
		if env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] != strings.TrimSpace(string(imdsURL)) || env["AWS_EC2_METADATA_DISABLED"] != "" {
			t.Errorf("the shim's metadata settings: endpoint %q, disabled %q; want %s and unset",
				env["AWS_EC2_METADATA_SERVICE_ENDPOINT"], env["AWS_EC2_METADATA_DISABLED"], imdsURL)
		}
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "shim.json"))
	if json.Unmarshal(b, &cfg) != nil || cfg["credential_refresh"] != (lifetime/3).Truncate(time.Millisecond).String() {
		t.Errorf("shim.json credential_refresh %v, want a third of %s", cfg["credential_refresh"], lifetime)
	}

	// The load: three clients signing back to back.
	var mu sync.Mutex
	var ok, failed int
	var firstErr string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := `{"message":"` + base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "rotation %d/%d", w, i)) + `"}`
				req, _ := http.NewRequest("POST", p.url+"/v1/keys/dev-ed25519/sign", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				code := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				if code == 200 {
					ok++
				} else {
					failed++
					if firstErr == "" {
						firstErr = fmt.Sprintf("%d %v", code, err)
					}
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond) // a steady load, not a flood, on a shared machine
			}
		}()
	}

	// Watch the pushed credentials' expiration: each new one must appear
	// before the one it replaces expires.
	type change struct{ seen, old, new time.Time }
	var changes []change
	first := p.fullStatus().Shim.CredentialsExpiration
	if first == nil {
		t.Fatal("no credentials_expiration in the status: the pushed credentials do not expire")
	}
	cur := *first
	deadline := time.Now().Add(3*lifetime + 30*time.Second)
	for len(changes) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		st := p.fullStatus()
		if e := st.Shim.CredentialsExpiration; e != nil && !e.Equal(cur) {
			changes = append(changes, change{time.Now(), cur, *e})
			cur = *e
		}
		if time.Now().After(cur.Add(lifetime)) {
			break // long expired, no refresh coming
		}
	}
	time.Sleep(time.Second) // load on the last credentials too
	close(stop)
	wg.Wait()

	var told []string
	for _, c := range changes {
		told = append(told, fmt.Sprintf("new ones seen %v before the old expired", c.old.Sub(c.seen).Round(time.Millisecond)))
	}
	t.Logf("%d signatures, %d failures; the pushed credentials changed %d times: %s", ok, failed, len(changes), strings.Join(told, "; "))
	if failed > 0 {
		t.Errorf("%d requests failed (first: %s), want none: signing must go on across refreshes", failed, firstErr)
	}
	if ok < 10 {
		t.Errorf("only %d signatures: the load proves little", ok)
	}
	if len(changes) < 2 {
		t.Fatalf("the pushed credentials changed %d times (%s), want at least 2 (lifetime %s); the last ones expired at %s", len(changes), strings.Join(told, "; "), lifetime, cur.Format(time.TimeOnly))
	}
	for i, c := range changes {
		if !c.seen.Before(c.old) || !c.new.After(c.old) {
			t.Errorf("refresh %d: new credentials (expiring %s) seen at %s, the old ones expired at %s: want them before the old ones expire",
				i+1, c.new.Format(time.TimeOnly), c.seen.Format(time.StampMilli), c.old.Format(time.TimeOnly))
		}
	}
	code, metrics := p.do("GET", "/metrics", nil)
	if want := fmt.Sprintf("signer_credentials_expiry_timestamp_seconds %d\n", cur.Unix()); code != 200 || !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics does not show the pushed credentials' expiry (%q)", want)
	}
	if refreshes := jsonLog(t, dir, "shim", "provisioning the enclave"); len(refreshes) < 3 || refreshes[1]["reason"] != "credentials refresh" {
		t.Errorf("the shim's provisionings: %v; want the first, then credentials refreshes", refreshes)
	}

	// Each provisioning's Decrypt was signed by a different instance-role
	// session, and KMS saw no expired token.
	emuLog := logFile(t, dir, "kms-emulator")
	keys := map[string]bool{}
	for _, m := range regexp.MustCompile(`msg="kms request".*access_key_id=(ASIA\S+) principal=arn:aws:sts::000000000000:assumed-role/dev/i-[0-9a-f]+ .*op=Decrypt`).FindAllStringSubmatch(emuLog, -1) {
		keys[m[1]] = true
	}
	if len(keys) < 3 {
		t.Errorf("Decrypt by %d distinct instance-role sessions, want at least 3 (the first push and two refreshes)", len(keys))
	}
	if strings.Contains(emuLog, "ExpiredTokenException") || strings.Contains(emuLog, "credential expired") {
		t.Errorf("KMS saw an expired token:\n%s", emuLog)
	}
	provisioned := jsonLog(t, dir, "signerd", "provisioned")
	if len(provisioned) < 3 {
		t.Errorf("signerd provisioned %d times, want at least 3", len(provisioned))
	}
	for _, m := range provisioned[min(1, len(provisioned)):] {
		if m["replaced_keys"] != float64(3) {
			t.Errorf("a refresh did not replace the 3 keys in place: %v", m)
		}
	}
}

// waitOutput waits until out contains want, or fails the test after bound.
func waitOutput(t *testing.T, out *lockedBuffer, want string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q after %s; output:\n%s", want, bound, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKMSEmulatorOutage: the real binary, sent SIGUSR1, refuses
// connections on its KMS address (as an unreachable KMS does) while the
// process and its keys live on; SIGUSR2 brings it back on the same
// address with the same keys.
func TestKMSEmulatorOutage(t *testing.T) {
	bin := builtBinaries(t)
	dir := t.TempDir()
	out := &lockedBuffer{}
	cmd := exec.Command(filepath.Join(bin, "signer"), "kms-emulator", "--listen", "127.0.0.1:0", "--state", filepath.Join(dir, "s.json"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("kms-emulator output:\n%s", out)
		}
	})
	waitOutput(t, out, "endpoint=", 10*time.Second)
	endpoint := endpointRE.FindStringSubmatch(out.String())[1]
	ctx := t.Context()
	c := kmsClient(endpoint, "test", "test", nil)
	key, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}

	cmd.Process.Signal(syscall.SIGUSR1)
	waitOutput(t, out, "KMS down on purpose (SIGUSR1)", 5*time.Second)
	_, err = net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "http://"), time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial during the outage: %v, want connection refused", err)
	}
	_, err = c.ListKeys(ctx, &kms.ListKeysInput{})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("ListKeys during the outage: %v, want connection refused", err)
	}

	cmd.Process.Signal(syscall.SIGUSR2)
	waitOutput(t, out, "KMS back (SIGUSR2)", 5*time.Second)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d, err := c.DescribeKey(dctx, &kms.DescribeKeyInput{KeyId: key.KeyMetadata.KeyId})
	if err != nil || aws.ToString(d.KeyMetadata.KeyId) != aws.ToString(key.KeyMetadata.KeyId) {
		t.Fatalf("DescribeKey after the outage: %v", err)
	}
	// A second SIGUSR2 changes nothing.
	cmd.Process.Signal(syscall.SIGUSR2)
	time.Sleep(100 * time.Millisecond)
	if _, err := c.ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
		t.Fatalf("after a second SIGUSR2: %v", err)
	}
	if cmd.ProcessState != nil {
		t.Fatalf("the emulator exited: %v", cmd.ProcessState)
	}
}

// TestDevExpiredCredentialsRefused is the negative control of
// TestDevCredentialsRotate: credentials that are not refreshed fail at
// signerd's next KMS call, clearly. Beside signer dev --imds-credentials,
// a second shim serves the same signerd with session credentials copied
// from the emulator's IMDS into its environment, the way an operator
// might export them: the SDK cannot refresh those nor knows they expire.
// Before their expiration its provisioning works; after, KMS answers
// signerd ExpiredTokenException, which the status names with a hint, and
// the keys loaded before keep signing.
func TestDevExpiredCredentialsRefused(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir, "--imds-credentials", "10s")
	imdsURL, _ := os.ReadFile(filepath.Join(dir, "imds-endpoint"))
	var doc map[string]string
	var exp time.Time
	waitUntil(t, 15*time.Second, "credentials with 6 s left", func() bool {
		_, doc = imdsCredentials(t, strings.TrimSpace(string(imdsURL)))
		exp, _ = time.Parse(time.RFC3339, doc["Expiration"])
		return time.Until(exp) >= 6*time.Second
	})

	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "shim.json"))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	cfg["listen"], cfg["instance"] = addr, "negative-control"
	delete(cfg, "credential_refresh")
	b, _ = json.Marshal(cfg)
	cfgPath := filepath.Join(t.TempDir(), "shim.json")
	os.WriteFile(cfgPath, b, 0o600)
	out := &lockedBuffer{}
	shim := exec.Command(filepath.Join(builtBinaries(t), "signer"), "serve", "--config", cfgPath)
	shim.Stdout, shim.Stderr = out, out
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			shim.Env = append(shim.Env, kv)
		}
	}
	shim.Env = append(shim.Env, "AWS_ACCESS_KEY_ID="+doc["AccessKeyId"], "AWS_SECRET_ACCESS_KEY="+doc["SecretAccessKey"], "AWS_SESSION_TOKEN="+doc["Token"],
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
	if err := shim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		shim.Process.Signal(syscall.SIGTERM)
		shim.Wait()
		if t.Failed() {
			t.Logf("second shim's log:\n%s", out)
		}
	})
	other := &devProc{t: t, dir: dir, url: "http://" + addr}
	waitUntil(t, 15*time.Second, "the second shim's status", func() bool { return other.state() == "ready" })
	provision := func() (int, string) {
		code, body := other.do("POST", "/v1/provision", nil)
		return code, string(body)
	}
	if code, body := provision(); code != 200 || !strings.Contains(body, `"state":"ready"`) {
		t.Fatalf("provisioning with the copied credentials before they expire: %d %s", code, body)
	}

	time.Sleep(time.Until(exp) + 200*time.Millisecond)
	// The answer carries the status right after this provisioning (a
	// later GET could already show the next refresh by signer dev's shim).
	code, body := provision()
	var answer struct {
		Error  struct{ Code, Message string }
		Status fullStatus
	}
	json.Unmarshal([]byte(body), &answer)
	st := answer.Status
	var se struct {
		KMSCode string `json:"kms_code"`
		Step    string `json:"step"`
		Hint    string `json:"hint"`
	}
	json.Unmarshal(st.Error, &se)
	if code != 500 || answer.Error.Code != "internal" || !strings.Contains(answer.Error.Message, "ExpiredTokenException") ||
		se.KMSCode != "ExpiredTokenException" || se.Step != "kms_decrypt" || !strings.Contains(se.Hint, "KMS refused the credentials the shim sent") {
		t.Fatalf("provisioning after the credentials expired: %d %s\nwant 500 internal naming ExpiredTokenException, and the status error KMS ExpiredTokenException at kms_decrypt with the credentials hint", code, body)
	}
	emuLog := logFile(t, dir, "kms-emulator")
	if !regexp.MustCompile(`msg="credential expired".*access_key_id=` + doc["AccessKeyId"]).MatchString(emuLog) {
		t.Errorf("the emulator did not log the expired credential %s", doc["AccessKeyId"])
	}
	// signer dev copies signerd's output into its log as it comes: the
	// line may land a moment after the shim's answer.
	expiredLogged := func() bool {
		failed := jsonLog(t, dir, "signerd", "provisioning failed")
		return len(failed) > 0 && failed[len(failed)-1]["code"] == "ExpiredTokenException"
	}
	waitUntil(t, 10*time.Second, "signerd's log line for the refused provisioning", expiredLogged)
	if failed := jsonLog(t, dir, "signerd", "provisioning failed"); len(failed) == 0 || failed[len(failed)-1]["code"] != "ExpiredTokenException" {
		t.Errorf("signerd's failed provisionings: %v, want ExpiredTokenException", failed)
	}
	// The keys loaded before keep serving, through both shims.
	p.signOK("after a refused provisioning")
	if st.State != "ready" || st.Keys != 3 {
		t.Errorf("after the refused provisioning the enclave is %s with %d keys, want still ready with 3", st.State, st.Keys)
	}
}
