package shim_test

import (
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/enclave-signer/enclave-signer/internal/shim"
	"github.com/enclave-signer/enclave-signer/internal/transport"
)

func TestExampleConfig(t *testing.T) {
	f, err := os.Open("../../docs/examples/shim-config.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := shim.ParseConfig(f)
	if err != nil {
		t.Fatalf("docs/examples/shim-config.json: %v", err)
	}
	if a := c.EnclaveAddr(); a.Scheme != transport.Vsock || a.CID != 16 || a.Port != 5005 {
		t.Errorf("enclave = %+v", a)
	}
	if c.ListenAddr().HostPort != "127.0.0.1:8080" || c.Region != "eu-west-1" || len(c.Keyrings) != 2 ||
		c.RequestTimeout.D() != 5*time.Second || c.RetryMax.D() != time.Minute || c.CredentialRefresh.D() != 5*time.Minute {
		t.Errorf("parsed %+v", c)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := shim.ParseConfig(strings.NewReader(`{"enclave":"unix:///run/s.sock","region":"us-east-1","identity":"id.enc","keyrings":["k.age"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != shim.DefaultListen || c.EnclaveConnections != 2 || c.RequestTimeout.D() != shim.DefaultRequestTimeout ||
		c.StatusInterval.D() != shim.DefaultStatusInterval || c.RetryMin.D() != time.Second || c.RetryMax.D() != time.Minute ||
		c.CredentialRefresh.D() != 5*time.Minute || c.ProvisionTimeout.D() != time.Minute || c.LogLevel != "info" || c.LogFormat != "json" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	const base = `"enclave":"vsock://16:5005","region":"eu-west-1","identity":"id.enc","keyrings":["k.age"]`
	for _, tc := range []struct{ name, json, want string }{
		{"not JSON", `{"enclave":`, "config: "},
		{"unknown field", `{` + base + `,"kms_endpoint":"x"}`, `unknown field "kms_endpoint"`},
		{"wrong type", `{` + base + `,"enclave_connections":"two"}`, "enclave_connections"},
		{"bad duration", `{` + base + `,"request_timeout":"5 sec"}`, "request_timeout"},
		{"no enclave", `{"region":"eu-west-1","identity":"id.enc","keyrings":["k.age"]}`, "config: enclave: required"},
		{"bad enclave", `{` + strings.Replace(base, "vsock://16:5005", "16:5005", 1) + `}`, `config: enclave: invalid address "16:5005"`},
		{"public listen", `{` + base + `,"listen":"0.0.0.0:8080"}`, "config: listen: \"0.0.0.0:8080\" listens on every interface"},
		{"public listen v6", `{` + base + `,"listen":"[::]:8080"}`, "allow_public_listen"},
		{"empty host listen", `{` + base + `,"listen":":8080"}`, "allow_public_listen"},
		{"vsock listen", `{` + base + `,"listen":"vsock://3:80"}`, "config: listen:"},
		{"allowed host with port", `{` + base + `,"allowed_hosts":["signer.internal:8080"]}`, `config: allowed_hosts[0]: want a host name such as "signer.internal" or an IP address, without scheme or port, got "signer.internal:8080"`},
		{"allowed host URL", `{` + base + `,"allowed_hosts":["ok.example","http://x"]}`, `config: allowed_hosts[1]: `},
		{"allowed host empty", `{` + base + `,"allowed_hosts":[""]}`, `config: allowed_hosts[0]: `},
		{"no region", `{"enclave":"vsock://16:5005","identity":"id.enc","keyrings":["k.age"]}`, "config: region: required"},
		{"bad region", `{` + strings.Replace(base, "eu-west-1", "Europe", 1) + `}`, "config: region: want an AWS region"},
		{"no identity", `{"enclave":"vsock://16:5005","region":"eu-west-1","keyrings":["k.age"]}`, "config: identity: required"},
		{"bad s3 identity", `{` + strings.Replace(base, `"id.enc"`, `"s3://bucket"`, 1) + `}`, "config: identity: want s3://BUCKET/KEY"},
		{"http identity", `{` + strings.Replace(base, `"id.enc"`, `"https://x/y"`, 1) + `}`, "config: identity: want a file path or s3://BUCKET/KEY"},
		{"no keyrings", `{"enclave":"vsock://16:5005","region":"eu-west-1","identity":"id.enc","keyrings":[]}`, "config: keyrings: required"},
		{"duplicate keyring", `{` + strings.Replace(base, `["k.age"]`, `["k.age","k.age"]`, 1) + `}`, "config: keyrings[1]: \"k.age\" is listed twice"},
		{"bad s3 endpoint", `{` + base + `,"s3_endpoint":"localhost:9000"}`, "config: s3_endpoint: want http://"},
		{"too many connections", `{` + base + `,"enclave_connections":100}`, "config: enclave_connections: want 1 to 64, got 100"},
		{"negative duration", `{` + base + `,"status_interval":"-1s"}`, "config: status_interval: want a positive duration"},
		{"retry order", `{` + base + `,"provision_retry_min":"2m"}`, "config: provision_retry_max: 1m0s is shorter than provision_retry_min (2m0s)"},
		{"log level", `{` + base + `,"log_level":"verbose"}`, "config: log_level: want debug, info, warn or error"},
		{"log format", `{` + base + `,"log_format":"xml"}`, "config: log_format: want json or text"},
		{"two values", `{` + base + `} {}`, "more than one JSON value"},
		{"instance with a newline", `{` + base + `,"instance":"a\nb"}`, "config: instance: want at most 128 printable ASCII characters"},
		{"instance too long", `{` + base + `,"instance":"` + strings.Repeat("x", 129) + `"}`, "config: instance: want at most 128"},
		{"listen mode not octal", `{` + base + `,"listen":"unix:///run/s.sock","listen_mode":"rw"}`, `config: listen_mode: want an octal permission such as "0600" or "0660", got "rw"`},
		{"listen mode too big", `{` + base + `,"listen":"unix:///run/s.sock","listen_mode":"1777"}`, `config: listen_mode: want an octal permission`},
		{"listen mode owner cannot write", `{` + base + `,"listen":"unix:///run/s.sock","listen_mode":"0460"}`, `does not let the owner read and write`},
		{"listen mode for everyone", `{` + base + `,"listen":"unix:///run/s.sock","listen_mode":"0666"}`, `lets every user on the host connect, and so sign`},
		{"listen mode others read", `{` + base + `,"listen":"unix:///run/s.sock","listen_mode":"0604"}`, `lets every user on the host connect`},
		{"listen mode on TCP", `{` + base + `,"listen_mode":"0600"}`, `config: listen_mode: only for a unix:// listen address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := shim.ParseConfig(strings.NewReader(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
	// A unix socket's mode: 0600 unless set.
	for mode, want := range map[string]fs.FileMode{"": 0o600, "0600": 0o600, "0660": 0o660, "640": 0o640} {
		c, err := shim.ParseConfig(strings.NewReader(`{` + base + `,"listen":"unix:///run/s.sock","listen_mode":"` + mode + `"}`))
		if err != nil {
			t.Errorf("listen_mode %q: %v", mode, err)
		} else if got := c.ListenSocketMode(); got != want {
			t.Errorf("listen_mode %q: mode %v, want %v", mode, got, want)
		}
	}
	// Allowed when asked for.
	if _, err := shim.ParseConfig(strings.NewReader(`{` + base + `,"listen":"0.0.0.0:8080","allow_public_listen":true}`)); err != nil {
		t.Errorf("allow_public_listen: %v", err)
	}
	// Every problem at once, each naming its field.
	_, err := shim.ParseConfig(strings.NewReader(`{}`))
	for _, f := range []string{"enclave", "region", "identity", "keyrings"} {
		if err == nil || !strings.Contains(err.Error(), "config: "+f+": ") {
			t.Errorf("empty config: err = %v, want it to name %s", err, f)
		}
	}
}

func TestNewRefusesUnvalidatedConfig(t *testing.T) {
	if _, err := shim.New(&shim.Config{Enclave: "unix:///x"}, shim.Options{AWS: staticAWS()}); err == nil || !strings.Contains(err.Error(), "not validated") {
		t.Fatalf("err = %v", err)
	}
}

// TestPublicListenGuard: without allow_public_listen the API listens on
// loopback or a unix socket only; anything else names what is wrong and
// how to fix it.
func TestPublicListenGuard(t *testing.T) {
	const base = `"enclave":"vsock://16:5005","region":"eu-west-1","identity":"id.enc","keyrings":["k.age"]`
	for _, tc := range []struct {
		listen string
		ok     bool
		want   string // in the error
	}{
		{"127.0.0.1:8080", true, ""},
		{"127.1.2.3:8080", true, ""},
		{"tcp://127.0.0.1:8080", true, ""},
		{"[::1]:8080", true, ""},
		{"localhost:8080", true, ""},
		{"LocalHost:8080", true, ""},
		{"[::ffff:127.0.0.1]:8080", true, ""},
		{"unix:///run/signer.sock", true, ""},
		{"[::ffff:0.0.0.0]:8080", false, "every interface"},
		{"0.0.0.0:8080", false, "every interface"},
		{"[::]:8080", false, "every interface"},
		{":8080", false, "every interface"},
		{"192.168.1.20:8080", false, "not a loopback address"},
		{"[fe80::1%eth0]:8080", false, "not a loopback address"},
		{"[::ffff:10.0.0.5]:8080", false, "not a loopback address"},
		{"signer.example.com:8080", false, "host name"},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			_, err := shim.ParseConfig(strings.NewReader(`{` + base + `,"listen":"` + tc.listen + `"}`))
			if tc.ok {
				if err != nil {
					t.Fatalf("listen %q: %v", tc.listen, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("listen %q accepted without allow_public_listen", tc.listen)
			}
			for _, w := range []string{"config: listen: ", tc.want, "allow_public_listen", "127.0.0.1:PORT", "unix://"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("listen %q: error %q does not say %q", tc.listen, err, w)
				}
			}
			// Allowed when asked for.
			if _, err := shim.ParseConfig(strings.NewReader(`{` + base + `,"listen":"` + tc.listen + `","allow_public_listen":true}`)); err != nil {
				t.Errorf("listen %q with allow_public_listen: %v", tc.listen, err)
			}
		})
	}
}
