package shim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/audit"
	"github.com/enclave-signer/enclave-signer/internal/wireclient"
	"github.com/enclave-signer/enclave-signer/pkg/attestation"
)

// Draining the enclave's audit trail (docs/audit.md): the shim reads the
// records signerd holds, by cursor, and appends them to the JSON Lines
// file audit_log, each boot's chain after a boot record that carries a
// fresh attestation document of that boot's audit key. It stores; it
// cannot rewrite unnoticed.
const (
	// auditPoll is the wait between reads when nothing is left to read.
	auditPoll = 100 * time.Millisecond
	// auditBackoffMax bounds the wait after failures in a row.
	auditBackoffMax = 5 * time.Second
	// auditCallTimeout bounds one read or attestation.
	auditCallTimeout = 10 * time.Second
)

// auditDrain is the drain loop and its state.
type auditDrain struct {
	path   string
	client *wireclient.Client
	log    *slog.Logger
	paused func() bool // the test hook (Options.AuditPaused); nil: never
	now    func() time.Time

	// Only the loop touches these.
	f      *os.File
	key    ed25519.PublicKey // the boot the file's last records belong to
	cursor uint64

	mu        sync.Mutex
	st        AuditLogState
	failures  int
	lastError time.Time
}

// AuditLogState is the shim's side of the audit trail, in /v1/status
// (shim.audit_log) and /metrics.
type AuditLogState struct {
	Path string `json:"path"`
	// State is "draining", "paused" (the test hook) or "failing".
	State string `json:"state"`
	// Records and Boots count the lines appended since the shim started:
	// entries and checkpoints, and boot records.
	Records uint64 `json:"records"`
	Boots   uint64 `json:"boots"`
	// AuditKey is the audit key (base64) of the boot whose records were
	// appended last; LastSeq the sequence number of the last of them.
	AuditKey  string     `json:"audit_key,omitempty"`
	LastSeq   uint64     `json:"last_seq"`
	LastWrite *time.Time `json:"last_write,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	Errors    uint64     `json:"errors"`
}

func newAuditDrain(path string, c *wireclient.Client, log *slog.Logger, paused func() bool, now func() time.Time) *auditDrain {
	return &auditDrain{path: path, client: c, log: log, paused: paused, now: now, st: AuditLogState{Path: path, State: "draining"}}
}

func (d *auditDrain) state() AuditLogState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

// run drains until ctx ends.
func (d *auditDrain) run(ctx context.Context) {
	if err := d.open(); err != nil {
		d.fail(err)
		d.log.Error("audit_log cannot be opened: the enclave's audit trail is not drained, and signing stops once its buffer is full", "audit_log", d.path, "err", err)
		return
	}
	defer d.f.Close()
	for ctx.Err() == nil {
		if d.paused != nil && d.paused() {
			d.setState("paused")
			sleep(ctx, auditPoll)
			continue
		}
		more, err := d.once(ctx)
		if err != nil {
			d.fail(err)
			sleep(ctx, d.backoff())
			continue
		}
		d.ok()
		if !more {
			sleep(ctx, auditPoll)
		}
	}
}

// once reads one batch and appends it; more says records are left.
func (d *auditDrain) once(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, auditCallTimeout)
	defer cancel()
	b, err := d.client.AuditRead(cctx, d.key, d.cursor, 0)
	if err != nil {
		return false, fmt.Errorf("reading the enclave's audit trail: %w", err)
	}
	var out []byte
	boot := !bytes.Equal(b.AuditKey, d.key)
	if boot {
		line, err := d.bootRecord(cctx, b.AuditKey)
		if err != nil {
			return false, err
		}
		out = append(line, '\n')
	}
	// The lines are stored as signerd wrote them, for the verifier to
	// judge; only the last is parsed, for the state's sequence number.
	var last audit.Record
	for _, r := range b.Records {
		out = append(append(out, r...), '\n')
	}
	if n := len(b.Records); n > 0 {
		rec, err := audit.ParseLine(b.Records[n-1])
		if err != nil {
			d.log.Error("the enclave sent an audit record that does not parse; stored as sent", "err", err)
		}
		last = rec
	}
	if len(out) > 0 {
		if _, err := d.f.Write(out); err != nil {
			return false, fmt.Errorf("appending to audit_log %s: %w", d.path, err)
		}
		if err := d.f.Sync(); err != nil {
			return false, fmt.Errorf("syncing audit_log %s: %w", d.path, err)
		}
	}
	// Only now, with the records on disk, does the next read let signerd
	// free them.
	d.key, d.cursor = b.AuditKey, b.Next
	d.mu.Lock()
	d.st.Records += uint64(len(b.Records))
	if boot {
		d.st.Boots++
		d.st.AuditKey, d.st.LastSeq = base64.StdEncoding.EncodeToString(b.AuditKey), 0
	}
	if e, ok := last.(*audit.Entry); ok {
		d.st.LastSeq = e.Seq
	} else if c, ok := last.(*audit.Checkpoint); ok {
		d.st.LastSeq = c.Seq
	}
	if len(out) > 0 {
		d.st.LastWrite = timePtr(d.now())
	}
	d.mu.Unlock()
	return b.More, nil
}

// bootRecord fetches a fresh attestation document and checks that it
// attests key before it starts that boot's chain in the file.
func (d *auditDrain) bootRecord(ctx context.Context, key []byte) ([]byte, error) {
	doc, err := d.client.Attest(ctx, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("attestation document for the audit log's boot record: %w", err)
	}
	parsed, err := attestation.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("attestation document for the audit log's boot record: %w", err)
	}
	ud, err := parsed.SignerdUserData()
	if err != nil {
		return nil, fmt.Errorf("attestation document for the audit log's boot record: %w", err)
	}
	if !bytes.Equal(ud.AuditKey(), key) {
		// The enclave restarted between the read and the document: read again.
		return nil, errors.New("the attestation document attests another audit key than the batch's (the enclave restarted?); reading again")
	}
	d.log.Info("audit log: a new enclave boot", "audit_key", fmt.Sprintf("%x", key), "audit_log", d.path)
	return (&audit.Boot{AuditKey: key, Attestation: doc}).AppendJSON(nil), nil
}

// open opens the file for appending (creating it with mode 0600) and
// finds where it left off: the audit key of its last boot and the
// position after its last record, so that the first read resumes there.
// A last line cut off mid-record (the shim stopped while writing) is
// removed: its record is still in the enclave, not yet freed.
func (d *auditDrain) open() error {
	f, err := os.OpenFile(d.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	key, pos, keep, err := scanAuditLog(f)
	if err == nil {
		var size int64
		if size, err = f.Seek(0, io.SeekEnd); err == nil && keep < size {
			d.log.Warn("audit_log ends with a line cut off mid-record; removing it (the enclave still holds the record)", "audit_log", d.path, "bytes", size-keep)
			err = f.Truncate(keep)
		}
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekEnd)
	}
	if err != nil {
		f.Close()
		return err
	}
	d.f, d.key, d.cursor = f, key, pos
	if key != nil {
		d.mu.Lock()
		d.st.AuditKey, d.st.LastSeq = base64.StdEncoding.EncodeToString(key), lastSeqAt(pos)
		d.mu.Unlock()
		d.log.Info("audit log: resuming", "audit_log", d.path, "audit_key", fmt.Sprintf("%x", key), "cursor", pos)
	}
	return nil
}

// scanAuditLog reads a log for its last boot's audit key, the position
// after its last record, and the length of its complete lines. A boot
// record is parsed in full; of the rest, only the last line.
func scanAuditLog(r io.Reader) (key ed25519.PublicKey, next uint64, keep int64, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var last []byte
	var off int64
	for {
		line, rerr := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			off += int64(len(line))
			body := bytes.TrimRight(line, "\r\n")
			if bytes.HasPrefix(body, []byte(`{"type":"boot"`)) {
				rec, perr := audit.ParseLine(body)
				if perr != nil {
					return nil, 0, 0, fmt.Errorf("audit_log: line ending at byte %d: %w", off, perr)
				}
				key, next, last = rec.(*audit.Boot).AuditKey, 0, nil
				continue
			}
			last = body
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, 0, 0, rerr
		}
	}
	if last != nil {
		rec, perr := audit.ParseLine(last)
		if perr != nil {
			return nil, 0, 0, fmt.Errorf("audit_log: its last line is not a record (%w): fix or move the file", perr)
		}
		next = audit.Position(rec) + 1
	}
	return key, next, off, nil
}

// lastSeqAt is the sequence number of the record just before cursor
// position pos: entry s is at 2s, its checkpoint at 2s+1.
func lastSeqAt(pos uint64) uint64 {
	if pos == 0 {
		return 0
	}
	return (pos - 1) / 2
}

func (d *auditDrain) setState(s string) {
	d.mu.Lock()
	d.st.State = s
	d.mu.Unlock()
}

func (d *auditDrain) ok() {
	d.mu.Lock()
	d.failures = 0
	d.st.State = "draining"
	d.mu.Unlock()
}

// fail records err, and logs it at most every 30 s.
func (d *auditDrain) fail(err error) {
	d.mu.Lock()
	d.failures++
	d.st.State, d.st.LastError = "failing", err.Error()
	d.st.Errors++
	now := d.now()
	logIt := now.Sub(d.lastError) >= 30*time.Second
	if logIt {
		d.lastError = now
	}
	d.mu.Unlock()
	if logIt {
		d.log.Warn("audit trail not drained", "err", err)
	}
}

func (d *auditDrain) backoff() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := auditPoll << min(d.failures, 6)
	return min(b, auditBackoffMax)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
