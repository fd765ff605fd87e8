package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHelperSpinner is not a test: run as a child process by the pinning
// tests (BENCH_HELPER=spin), it starts goroutines that keep several
// threads alive, and waits to be killed.
func TestHelperSpinner(t *testing.T) {
	if os.Getenv("BENCH_HELPER") != "spin" {
		return
	}
	for range 4 {
		go func() {
			for {
				time.Sleep(time.Millisecond)
			}
		}()
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	os.Exit(0)
}

func helper(t *testing.T) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSpinner$")
	cmd.Env = append(os.Environ(), "BENCH_HELPER=spin", "GOMAXPROCS=4")
	return cmd
}

// threadCPUs returns the Cpus_allowed_list of every thread of pid.
func threadCPUs(t *testing.T, pid int) map[string]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if err != nil {
			continue // exited
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				out[e.Name()] = strings.TrimSpace(v)
			}
		}
	}
	return out
}

func lastCPU(t *testing.T) []int {
	avail, err := AvailableCPUs()
	if err != nil || len(avail) == 0 {
		t.Fatalf("AvailableCPUs: %v %v", avail, err)
	}
	return avail[len(avail)-1:]
}

func startHelper(t *testing.T, pinTo []int) *exec.Cmd {
	cmd := helper(t)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if pinTo != nil {
		err = StartPinned(cmd, pinTo)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf[:5]) != "ready" {
		t.Fatalf("helper said %q, %v", buf, err)
	}
	return cmd
}

func TestPinProcessPinsEveryThread(t *testing.T) {
	cpu := lastCPU(t)
	cmd := startHelper(t, nil)
	if n := len(threadCPUs(t, cmd.Process.Pid)); n < 2 {
		t.Fatalf("helper has %d threads, want several for this test to mean anything", n)
	}
	if err := PinProcess(cmd.Process.Pid, cpu); err != nil {
		t.Fatal(err)
	}
	want := FormatCPUs(cpu)
	for tid, got := range threadCPUs(t, cmd.Process.Pid) {
		if got != want {
			t.Errorf("thread %s may run on CPUs %s, want %s", tid, got, want)
		}
	}
}

func TestStartPinnedIsPinnedFromTheStart(t *testing.T) {
	cpu := lastCPU(t)
	before, _ := AvailableCPUs()
	cmd := startHelper(t, cpu)
	want := FormatCPUs(cpu)
	threads := threadCPUs(t, cmd.Process.Pid)
	if len(threads) < 2 {
		t.Fatalf("helper has %d threads", len(threads))
	}
	for tid, got := range threads {
		if got != want {
			t.Errorf("thread %s may run on CPUs %s, want %s", tid, got, want)
		}
	}
	// This thread's own affinity is as it was.
	after, _ := AvailableCPUs()
	if FormatCPUs(after) != FormatCPUs(before) {
		t.Errorf("the starting process's CPUs changed from %s to %s", FormatCPUs(before), FormatCPUs(after))
	}
}

func TestPinErrors(t *testing.T) {
	if err := PinProcess(os.Getpid(), nil); err == nil || !strings.Contains(err.Error(), "empty CPU list") {
		t.Errorf("PinProcess with no CPUs: %v", err)
	}
	if err := PinProcess(os.Getpid(), []int{1 << 20}); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("PinProcess to CPU 2^20: %v", err)
	}
	if err := StartPinned(exec.Command("true"), nil); err == nil {
		t.Error("StartPinned with no CPUs: no error")
	}
}

func TestProcessCPUTime(t *testing.T) {
	self, err := ProcessCPUTime(0)
	if err != nil || self <= 0 {
		t.Fatalf("own CPU time %v, %v", self, err)
	}
	viaProc, err := ProcessCPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in 10 ms ticks, and time passes between the two reads.
	if d := viaProc - self; d < -20*time.Millisecond || d > time.Second {
		t.Errorf("CPU time from /proc %v, from getrusage %v", viaProc, self)
	}
	if _, err := ProcessCPUTime(1 << 30); err == nil {
		t.Error("CPU time of a process that does not exist: no error")
	}
}
