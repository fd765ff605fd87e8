package wire

import (
	"sync"
	"time"
)

// pressureInterval is the least time between two pressure log lines.
var pressureInterval = 10 * time.Second

// pressureLog turns events a peer can cause by the thousand (refused
// connections, waits for frame memory, stalled frames, bad framing from
// unprivileged peers) into at most one WARN line per pressureInterval: the
// first event is logged at once, later ones are added up into a line at
// the end of the interval, with the counts since the previous line and the
// gauges of the moment.
type pressureLog struct {
	s     *Server
	mu    sync.Mutex
	last  time.Time   // when the last line was logged
	armed bool        // a line is scheduled
	prev  ServerStats // the counters at the last line
}

// note records that something worth a line happened (the counters say
// what).
func (p *pressureLog) note() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.armed {
		return
	}
	wait := time.Until(p.last.Add(pressureInterval))
	if wait <= 0 {
		p.logLocked()
		return
	}
	p.armed = true
	time.AfterFunc(wait, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.armed = false
		p.logLocked()
	})
}

func (p *pressureLog) logLocked() {
	st := p.s.Stats()
	p.s.logger().Warn("wire: under pressure",
		"refused_conns", st.RefusedConns-p.prev.RefusedConns,
		"frame_memory_waits", st.FrameMemoryWaits-p.prev.FrameMemoryWaits,
		"frame_timeouts", st.FrameTimeouts-p.prev.FrameTimeouts,
		"bad_peer_conns", st.BadPeerConns-p.prev.BadPeerConns,
		"conns", st.Conns,
		"unprivileged_conns", st.UnprivilegedConns,
		"max_conns", st.MaxConns,
		"frame_memory_held", st.FrameMemoryHeld,
		"frame_bytes_read", st.FrameBytesRead,
		"frame_memory", st.FrameMemory,
	)
	p.prev = st
	p.last = time.Now()
}
