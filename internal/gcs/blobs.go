package gcs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/grpc/status"

	"github.com/goray/goray/proto/rpcpb"
)

// Client side of the GCS binary store (driver executables, working_dir
// packages), content-addressed by SHA-256.

// StoreFile uploads the file at path unless the store already holds its
// content, and returns its hash.
func StoreFile(ctx context.Context, c rpcpb.GcsServiceClient, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("gcs: hash %s: %w", path, err)
	}
	hash := hex.EncodeToString(h.Sum(nil))
	has, err := c.HasBinary(ctx, &rpcpb.BinaryRef{Hash: hash})
	if err != nil {
		return "", fmt.Errorf("gcs: %s", status.Convert(err).Message())
	}
	if has.Found {
		return hash, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	up, err := c.PutBinary(ctx)
	if err != nil {
		return "", fmt.Errorf("gcs: upload %s: %s", path, status.Convert(err).Message())
	}
	buf := make([]byte, 1<<20)
	first := true
	for {
		n, rerr := f.Read(buf)
		if n > 0 || first { // an empty file still announces its hash
			chunk := &rpcpb.Chunk{Data: buf[:n]}
			if first {
				chunk.Hash, first = hash, false
			}
			if err := up.Send(chunk); err != nil {
				break // the server's reason comes with CloseAndRecv
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return "", fmt.Errorf("gcs: read %s: %w", path, rerr)
		}
	}
	if _, err := up.CloseAndRecv(); err != nil {
		return "", fmt.Errorf("gcs: upload %s: %s", path, status.Convert(err).Message())
	}
	return hash, nil
}

// FetchFile downloads the content stored under hash into dir/name,
// atomically (a temporary file renamed into place), with mode.
func FetchFile(ctx context.Context, c rpcpb.GcsServiceClient, hash, dir, name string, mode os.FileMode) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	stream, err := c.GetBinary(ctx, &rpcpb.BinaryRef{Hash: hash})
	if err != nil {
		return "", fmt.Errorf("gcs: fetch %s: %s", hash, status.Convert(err).Message())
	}
	tmp, err := os.CreateTemp(dir, ".fetch-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err == nil {
			_, err = tmp.Write(chunk.Data)
		}
		if err != nil {
			tmp.Close()
			return "", fmt.Errorf("gcs: fetch %s: %s", hash, status.Convert(err).Message())
		}
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	return path, os.Rename(tmp.Name(), path)
}
