package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/enclave-signer/enclave-signer/internal/doctor"
	"github.com/enclave-signer/enclave-signer/internal/policy"
)

// doctorSeams are the boundaries signer doctor reads the instance through:
// commands, /proc and the root file system, HTTP (IMDS and the shim), the
// KMS client and the clock. Tests replace the whole variable and restore
// it; nothing else does.
var doctorSeams = struct {
	runner doctor.Runner
	procFS fs.FS
	rootFS fs.FS
	http   *http.Client
	// newKMS makes the GetKeyPolicy client for region (possibly empty:
	// then the AWS configuration's).
	newKMS func(ctx context.Context, e *env, o kmsTarget) (doctor.PolicyGetter, error)
	now    func() time.Time
}{
	runner: doctor.ExecRunner{},
	procFS: os.DirFS("/proc"),
	rootFS: os.DirFS("/"),
	http:   doctorHTTPClient(),
	newKMS: newDoctorKMS,
	now:    time.Now,
}

// doctorHTTPClient talks to IMDS (link-local) and the shim (loopback)
// directly: never through HTTP_PROXY, which would send the metadata
// service's session token to the proxy.
func doctorHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
			ResponseHeaderTimeout: 10 * time.Second,
			MaxIdleConns:          4,
			IdleConnTimeout:       5 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// kmsTarget is where doctor's KMS client goes.
type kmsTarget struct {
	region       string
	endpointURL  string // --endpoint-url, "" for the configuration's
	imdsEndpoint string // --imds-endpoint when given, for the SDK's credentials
}

// doctorKMS is the real PolicyGetter: aws-sdk-go-v2's KMS client with the
// default configuration chain. Kept small on purpose, to be unified later
// with the other commands' KMS client.
type doctorKMS struct{ client *kms.Client }

func (k doctorKMS) GetKeyPolicy(ctx context.Context, keyID string) (string, error) {
	out, err := k.client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(keyID), PolicyName: aws.String("default")})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.Policy), nil
}

func newDoctorKMS(ctx context.Context, _ *env, o kmsTarget) (doctor.PolicyGetter, error) {
	var opts []func(*config.LoadOptions) error
	if o.region != "" {
		opts = append(opts, config.WithRegion(o.region))
	}
	if o.imdsEndpoint != "" {
		opts = append(opts, config.WithEC2IMDSEndpoint(o.imdsEndpoint))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %v", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: pass --region, set AWS_REGION, or run on the instance (doctor asks IMDS)")
	}
	client := kms.NewFromConfig(cfg, func(ko *kms.Options) {
		if o.endpointURL != "" {
			ko.BaseEndpoint = aws.String(o.endpointURL)
		}
	})
	return doctorKMS{client}, nil
}

// runDoctor is `signer doctor`: it checks the parent instance (nitro-cli
// and the running enclave, the vsock-proxy and its allowlist, the instance
// role's credentials, the shim, and the key policy against the EIF's and
// the running enclave's PCR0) and prints one line per finding. Exit 1 if
// any finding is an error.
func runDoctor(e *env) error {
	flags := newFlagSet(e, "doctor")
	endpoint := flags.String("endpoint", doctor.DefaultShimEndpoint, "the host shim's `URL`")
	keyID := flags.String("key-id", "", "the KMS key whose policy to check (key `ID`, key ARN or alias); without it the key policy is skipped")
	measurements := flags.String("measurements", "", "`FILE` with the EIF's measurements (the JSON nitro-cli build-enclave or describe-eif prints)")
	region := flags.String("region", "", "AWS `region` of the key; default AWS_REGION, AWS_DEFAULT_REGION, else the instance's (IMDS)")
	enclaveRole := flags.String("enclave-role", "", "the principal `ARN` the key policy must let decrypt; default the instance role's session, from IMDS")
	imdsEndpoint := flags.String("imds-endpoint", "", "the instance metadata service's `URL` (default "+doctor.DefaultIMDSEndpoint+")")
	endpointURL := flags.String("endpoint-url", "", "send KMS requests to `URL` (e.g. the KMS emulator); default AWS_ENDPOINT_URL_KMS, else the regional endpoint")
	proxyPort := flags.Uint("kms-proxy-port", doctor.DefaultKMSProxyPort, "the vsock `port` of signerd's --kms-proxy")
	timeout := flags.Duration("timeout", 5*time.Second, "bound on each request and command")
	asJSON := flags.Bool("json", false, "print one JSON object instead of lines")
	args, err := parseFlags(flags, e.args)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return unexpectedArg("doctor", args[0], "")
	}
	for _, u := range []struct{ flag, v string }{{"--endpoint", *endpoint}, {"--imds-endpoint", *imdsEndpoint}, {"--endpoint-url", *endpointURL}} {
		if u.v == "" && u.flag != "--endpoint" {
			continue
		}
		if p, err := url.Parse(u.v); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return usageErrorf("doctor: %s: want http://HOST[:PORT] or https://HOST[:PORT], got %q", u.flag, u.v)
		}
	}
	if *proxyPort == 0 || *proxyPort > 1<<32-1 {
		return usageErrorf("doctor: --kms-proxy-port: want a vsock port from 1 to 4294967295, got %d", *proxyPort)
	}
	if *timeout <= 0 {
		return usageErrorf("doctor: --timeout: want a positive duration, got %s", *timeout)
	}
	if r := *enclaveRole; r != "" && (!strings.HasPrefix(r, "arn:") || strings.Count(r, ":") < 5) {
		return usageErrorf("doctor: --enclave-role: want an ARN such as arn:aws:iam::123456789012:role/NAME, got %q", r)
	}
	var meas *policy.Measurements
	if *measurements != "" {
		b, err := measurementsFile("doctor", *measurements).read(e, 1<<20)
		if err != nil {
			return err
		}
		if meas, err = policy.ParseMeasurements(*measurements, b); err != nil {
			return fmt.Errorf("doctor: --measurements: %w", err)
		}
	}
	reg := *region
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if reg == "" {
			reg = e.getenv(v)
		}
	}

	seams := doctorSeams
	cfg := doctor.Config{
		Runner:       seams.runner,
		ProcFS:       seams.procFS,
		RootFS:       seams.rootFS,
		HTTP:         seams.http,
		IMDSEndpoint: *imdsEndpoint,
		ShimEndpoint: *endpoint,
		NewPolicyGetter: func(ctx context.Context, region string) (doctor.PolicyGetter, error) {
			return seams.newKMS(ctx, e, kmsTarget{region: region, endpointURL: *endpointURL, imdsEndpoint: *imdsEndpoint})
		},
		KeyID:            *keyID,
		Measurements:     meas,
		MeasurementsName: *measurements,
		Region:           reg,
		EnclaveRole:      *enclaveRole,
		KMSProxyPort:     uint32(*proxyPort),
		Timeout:          *timeout,
		Now:              seams.now,
	}
	rep, err := doctor.Run(e.ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		err = rep.WriteJSON(e.stdout)
	} else {
		err = rep.WriteText(e.stdout)
		fmt.Fprintf(e.stderr, "signer doctor: %s\n", rep.Summary())
	}
	if err != nil {
		return fmt.Errorf("doctor: writing the report: %w", err)
	}
	if rep.Failed() {
		return errFailed
	}
	return nil
}
