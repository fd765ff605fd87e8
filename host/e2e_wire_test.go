//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// TestWireMemoryUnderAttack is issue 9's "memory before authentication",
// end to end with the real binaries: signerd listens on 127.0.0.1 TCP,
// where source ports mean what they mean over vsock, and the shim dials it
// from a privileged port. Then 1,000 local connections each declare a
// 1 MiB frame and send all of it but the last byte, three times:
//
//  1. as their first frame, before any Hello (the Hello limit refuses
//     them; past --max-conns, the connection limit);
//  2. after a Hello, from ephemeral ports (64 complete their Hello, the
//     rest are refused with too_many_connections);
//  3. after a Hello, from privileged ports, which no limit refuses (what
//     root can do; and what holds over unix sockets, whose peers all count
//     as privileged): only the frame memory and each connection's small
//     fixed cost bound what signerd holds.
//
// Each time signerd's peak RSS (VmHWM) may grow by at most 32 MiB over its
// value before the first attack, and signing through the shim's HTTP API
// keeps working throughout.
func TestWireMemoryUnderAttack(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI must run as root: the shim and the attack bind privileged source ports")
		}
		t.Skip("needs root: the shim and the attack bind privileged source ports")
	}
	signerdAddr := freePort(t)
	_, portStr, _ := net.SplitHostPort(signerdAddr)
	signerdPort, _ := strconv.Atoi(portStr)
	p := startDev(t, t.TempDir(), "--signerd-listen", "tcp://"+signerdAddr)
	if st := p.status(); st.State != "ready" {
		t.Fatalf("stack not ready: %+v", st)
	}
	pid := childPID(t, p.cmd.Process.Pid, "signerd")

	// The shim's connections come from privileged ports.
	shimPorts := peerPorts(t, signerdPort)
	if len(shimPorts) == 0 {
		t.Fatal("no connection to signerd in /proc/net/tcp")
	}
	for _, port := range shimPorts {
		if port >= 1024 {
			t.Fatalf("the shim connects to signerd from port %d, want a privileged one (below 1024); ports %v", port, shimPorts)
		}
	}

	signer := &shimSigner{url: p.url, client: &http.Client{Timeout: 10 * time.Second}}
	for range 20 {
		if err := signer.sign(); err != nil {
			t.Fatal(err)
		}
	}
	baseline := procStatusKiB(t, pid, "VmHWM")
	t.Logf("signerd (pid %d) before the attacks: VmHWM %d KiB, VmRSS %d KiB", pid, baseline, procStatusKiB(t, pid, "VmRSS"))

	const limitKiB = 32 << 10
	for _, phase := range []struct {
		name       string
		hello      bool
		privileged bool
	}{
		{"before hello", false, false},
		{"after hello", true, false},
		{"after hello from privileged ports", true, true},
	} {
		t.Run(phase.name, func(t *testing.T) {
			signing := signer.during()
			a := attack(t, signerdAddr, 1000, phase.hello, phase.privileged)
			// The attack holds its connections, and writes what signerd
			// reads, while the shim signs.
			time.Sleep(3 * time.Second)
			hwm, rss := procStatusKiB(t, pid, "VmHWM"), procStatusKiB(t, pid, "VmRSS")
			ok, failed := signing()
			a.close()
			t.Logf("%s: %d connections, %d completed a hello, %d were refused (%d too_many_connections), %d frames not written in full; "+
				"signerd VmHWM %d KiB (+%d KiB), VmRSS %d KiB; %d signatures meanwhile",
				phase.name, a.conns, a.helloOK.Load(), a.refused.Load(), a.tooMany.Load(), a.shortWrites.Load(), hwm, hwm-baseline, rss, ok)
			if hwm-baseline > limitKiB {
				t.Errorf("signerd's peak RSS grew by %d KiB under the attack, want at most %d KiB", hwm-baseline, limitKiB)
			}
			if failed != nil {
				t.Errorf("signing through the shim failed during the attack: %v", failed)
			}
			if ok < 10 {
				t.Errorf("only %d signatures through the shim during the attack", ok)
			}
			switch {
			case !phase.hello && a.helloOK.Load() != 0:
				t.Errorf("%d connections got a hello_ack without sending a hello", a.helloOK.Load())
			case phase.hello && !phase.privileged && (a.helloOK.Load() > wire.DefaultMaxConns || a.tooMany.Load() < 1000-wire.DefaultMaxConns):
				t.Errorf("%d unprivileged connections completed a hello and %d were told too_many_connections; want at most %d and the rest",
					a.helloOK.Load(), a.tooMany.Load(), wire.DefaultMaxConns)
			case phase.privileged && a.helloOK.Load() != int64(a.conns):
				t.Errorf("%d of %d privileged connections completed a hello, want all", a.helloOK.Load(), a.conns)
			}
			// signerd lets go of the attack's connections.
			deadline := time.Now().Add(15 * time.Second)
			for n := len(peerPorts(t, signerdPort)); n != len(shimPorts); n = len(peerPorts(t, signerdPort)) {
				if time.Now().After(deadline) {
					t.Fatalf("signerd still holds %d connections 15 s after the attack closed them", n-len(shimPorts))
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}

	if ports := peerPorts(t, signerdPort); !slices.Equal(ports, shimPorts) {
		t.Errorf("the shim's connections changed under the attack: %v, then %v", shimPorts, ports)
	}
	logs, _ := os.ReadFile(filepath.Join(p.dir, "logs", "signerd.log"))
	if n := strings.Count(string(logs), "wire: under pressure"); n == 0 || n > 20 {
		t.Errorf("signerd logged %d 'wire: under pressure' lines for 3,000 attacking connections, want a few", n)
	}
	if n := strings.Count(string(logs), "\n"); n > 200 {
		t.Errorf("signerd logged %d lines during the attacks: the log is flooded", n)
	}
}

// shimSigner signs through the shim's HTTP API.
type shimSigner struct {
	url    string
	client *http.Client
}

func (s *shimSigner) sign() error {
	body := `{"message":"` + base64.StdEncoding.EncodeToString([]byte("under attack")) + `"}`
	resp, err := s.client.Post(s.url+"/v1/keys/dev-ed25519/sign", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct{ Signature string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Signature == "" {
		return fmt.Errorf("sign: HTTP %d, %v", resp.StatusCode, err)
	}
	return nil
}

// during signs in a loop until the returned function is called, which
// returns the signatures made and the first failure.
func (s *shimSigner) during() func() (int, error) {
	stop := make(chan struct{})
	done := make(chan struct{})
	var ok int
	var failed error
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if err := s.sign(); err != nil {
				if failed == nil {
					failed = err
				}
				continue
			}
			ok++
		}
	}()
	return func() (int, error) {
		close(stop)
		<-done
		return ok, failed
	}
}

// attackConns is one wave of attacking connections.
type attackConns struct {
	conns       int
	writers     sync.WaitGroup // the frames' writers, ended by close
	mu          sync.Mutex
	open        []net.Conn
	helloOK     atomic.Int64
	refused     atomic.Int64 // answered with an error frame
	tooMany     atomic.Int64 // of which too_many_connections
	shortWrites atomic.Int64 // frames not written in full (the server closed, or stopped reading)
}

func (a *attackConns) close() {
	a.mu.Lock()
	for _, c := range a.open {
		// Reset rather than close: no TIME_WAIT left on this side to
		// hold the test's source ports.
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	a.open = nil
	a.mu.Unlock()
	a.writers.Wait()
}

// attack opens n connections to addr (from privileged ports if asked,
// spread over 127.0.0.2 and up for enough of them), each sending a Hello
// if asked, then a 1 MiB frame's prefix and all of its body but the last
// byte, and keeping the connection open. It returns once every connection
// is open and past its Hello; the frames are written in the background,
// each through a 64 KiB send buffer (so that the kernel holds little of
// what signerd does not read) and under a deadline, until close.
func attack(t *testing.T, addr string, n int, hello, privileged bool) *attackConns {
	t.Helper()
	a := &attackConns{conns: n}
	t.Cleanup(a.close)
	frame := make([]byte, wire.HeaderSize+wire.MaxFrameSize-1)
	binary.BigEndian.PutUint32(frame, wire.MaxFrameSize)
	helloBody, err := wire.Marshal(0, &wire.Hello{Versions: []uint16{wire.Version}, Software: "attack"})
	if err != nil {
		t.Fatal(err)
	}
	var helloFrame bytes.Buffer
	wire.WriteFrame(&helloFrame, helloBody)

	var nextPort atomic.Int32
	dial := func() (net.Conn, error) {
		// Generous: on a loaded machine signerd may be slow to accept a
		// thousand connections; what is measured is its memory, not that.
		if !privileged {
			return net.DialTimeout("tcp", addr, 30*time.Second)
		}
		for {
			// Ports 600 to 999 of 127.0.0.2, then of 127.0.0.3, ...: every
			// address of 127/8 is local.
			i := int(nextPort.Add(1))
			if i > 8*400 {
				return nil, errors.New("no privileged source port left")
			}
			d := net.Dialer{
				Timeout:   30 * time.Second,
				LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i/400)), Port: 600 + i%400},
				// A port of an earlier run may still be in TIME_WAIT.
				Control: func(_, _ string, rc syscall.RawConn) error {
					return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
				},
			}
			c, err := d.Dial("tcp", addr)
			if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL) {
				continue
			}
			return c, err
		}
	}

	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	var dialErr atomic.Pointer[error]
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dial()
			if err != nil {
				dialErr.CompareAndSwap(nil, &err)
				return
			}
			a.mu.Lock()
			a.open = append(a.open, c)
			a.mu.Unlock()
			c.(*net.TCPConn).SetWriteBuffer(64 << 10)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if hello {
				if _, err := c.Write(helloFrame.Bytes()); err != nil {
					a.shortWrites.Add(1)
					return
				}
				body, err := wire.ReadFrame(bufio.NewReaderSize(c, 64), nil)
				if err != nil {
					return
				}
				switch _, m, _ := wire.Unmarshal(body); m := m.(type) {
				case *wire.HelloAck:
					a.helloOK.Add(1)
				case *wire.Error:
					a.refused.Add(1)
					if m.Code == wire.CodeTooManyConnections {
						a.tooMany.Add(1)
					}
					return
				}
			}
			a.writers.Go(func() {
				c.SetWriteDeadline(time.Now().Add(20 * time.Second))
				if _, err := c.Write(frame); err != nil {
					a.shortWrites.Add(1)
				}
			})
		})
	}
	wg.Wait()
	if err := dialErr.Load(); err != nil {
		t.Fatalf("attack dial: %v", *err)
	}
	return a
}

// childPID returns the pid of parent's child process named name.
func childPID(t *testing.T, parent int, name string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.HasSuffix(s[:i], "("+name) {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == strconv.Itoa(parent) {
			return pid
		}
	}
	t.Fatalf("no process %s with parent %d", name, parent)
	return 0
}

// procStatusKiB reads a "kB" field of /proc/PID/status.
func procStatusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("%s: %q", field, line)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// peerPorts returns, sorted, the remote ports of the sockets the server
// side holds on port (any state but LISTEN), from /proc/net/tcp.
func peerPorts(t *testing.T, port int) []int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] == "0A" { // LISTEN
			continue
		}
		lport, ok1 := hexPort(f[1])
		rport, ok2 := hexPort(f[2])
		if ok1 && ok2 && lport == port && f[3] != "06" { // not TIME_WAIT
			ports = append(ports, rport)
		}
	}
	slices.Sort(ports)
	return ports
}

func hexPort(addr string) (int, bool) {
	_, p, ok := strings.Cut(addr, ":")
	n, err := strconv.ParseUint(p, 16, 16)
	return int(n), ok && err == nil
}
