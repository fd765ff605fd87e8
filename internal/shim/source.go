package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/enclave-signer/enclave-signer/internal/wire"
)

// maxSourceSize bounds one sealed file: everything must fit in one wire
// frame anyway.
const maxSourceSize = wire.MaxFrameSize

// errEmptySource is a sealed file of 0 bytes (a failed copy, a placeholder):
// the provisioner names what it should have held.
var errEmptySource = errors.New("empty (0 bytes)")

// fetcher reads the sealed identity and keyrings from local files or S3.
// What it reads is ciphertext (KMS- or age-encrypted): it may be held in
// memory and sizes may be logged.
type fetcher struct {
	s3 *s3.Client // nil until an s3:// source is configured
}

func newFetcher(cfg *Config, awsCfg aws.Config) *fetcher {
	f := &fetcher{}
	needS3 := strings.HasPrefix(cfg.Identity, "s3://")
	for _, k := range cfg.Keyrings {
		needS3 = needS3 || strings.HasPrefix(k, "s3://")
	}
	if needS3 {
		f.s3 = s3.NewFromConfig(awsCfg, func(o *s3.Options) {
			o.Region = cfg.Region
			if cfg.S3Region != "" {
				o.Region = cfg.S3Region
			}
			if cfg.S3Endpoint != "" {
				o.BaseEndpoint = aws.String(cfg.S3Endpoint)
			}
			o.UsePathStyle = cfg.S3UsePathStyle
		})
	}
	return f
}

// fetch reads one source: a file path or s3://BUCKET/KEY.
func (f *fetcher) fetch(ctx context.Context, src string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(src, "s3://"); ok {
		bucket, key, _ := strings.Cut(rest, "/")
		return f.fetchS3(ctx, src, bucket, key)
	}
	fh, err := os.Open(src)
	if err != nil {
		return nil, err // *PathError names the file
	}
	defer fh.Close()
	return readLimited(fh, src)
}

// sigSuffix names a keyring's signature file next to it: KEYRING.sig, a
// local file or an S3 object (docs/keyring.md).
const sigSuffix = ".sig"

// errNoSource is a source that does not exist (a local file, an S3
// object answered NoSuchKey or NotFound).
var errNoSource = errors.New("does not exist")

// noSourceError is an error that means errNoSource.
type noSourceError struct{ error }

func (noSourceError) Is(target error) bool { return target == errNoSource }

// fetchSignature reads a keyring's signature file, src+".sig"; nil when
// there is none.
func (f *fetcher) fetchSignature(ctx context.Context, src string) ([]byte, error) {
	b, err := f.fetch(ctx, src+sigSuffix)
	if errors.Is(err, errNoSource) || errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, errEmptySource) {
		return nil, fmt.Errorf("%s is empty (0 bytes): want the keyring's signature file, as signer keyring sign writes it, or no file at all", src+sigSuffix)
	}
	return b, err
}

func (f *fetcher) fetchS3(ctx context.Context, src, bucket, key string) ([]byte, error) {
	if f.s3 == nil {
		return nil, fmt.Errorf("%s: no S3 client configured", src)
	}
	out, err := f.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		var api smithy.APIError
		if errors.As(err, &api) {
			err := fmt.Errorf("s3 GetObject %s: %s: %s", src, api.ErrorCode(), api.ErrorMessage())
			if c := api.ErrorCode(); c == "NoSuchKey" || c == "NotFound" {
				return nil, noSourceError{err}
			}
			return nil, err
		}
		return nil, fmt.Errorf("s3 GetObject %s: %w", src, err)
	}
	defer out.Body.Close()
	return readLimited(out.Body, src)
}

func readLimited(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSourceSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(data) > maxSourceSize {
		return nil, permanentError{fmt.Errorf("%s: larger than %d bytes, the most one provisioning can carry", name, maxSourceSize)}
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: %w", name, errEmptySource)
	}
	return data, nil
}
