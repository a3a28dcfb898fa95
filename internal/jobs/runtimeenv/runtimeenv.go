// Package runtimeenv handles a job's runtime_env: the job config a
// supervisor hands to its entrypoint, and working_dir packages — zipped
// on the client (without .git and what .gitignore lists, file modes kept),
// named by content hash gcs://_ray_pkg_<hash>.zip, stored in the cluster's
// package store and unpacked by nodes into the session's runtime_resources.
package runtimeenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Environment variables a job supervisor sets for its entrypoint, and keys
// of the driver's JobInfo.Env that carry the job's settings to its workers.
const (
	// EnvJobConfig holds the job's config as JSON (JobConfig); Ray's
	// RAY_JOB_CONFIG_JSON_ENV_VAR is set to the same.
	EnvJobConfig    = "GORAY_JOB_CONFIG_JSON"
	EnvRayJobConfig = "RAY_JOB_CONFIG_JSON_ENV_VAR"
	// KeySubmissionID marks the driver of a submitted job in JobInfo.Env.
	KeySubmissionID = "GORAY_SUBMISSION_ID"
	// KeyWorkingDir is the job's working_dir package URI in JobInfo.Env;
	// raylets start the job's workers in the unpacked package.
	KeyWorkingDir = "GORAY_WORKING_DIR_URI"
	// EnvMaxPackageSize overrides the package size limit (bytes).
	EnvMaxPackageSize = "GORAY_PACKAGE_MAX_SIZE"
	// DefaultMaxPackageSize is Ray's GCS_STORAGE_MAX_SIZE, 500 MiB.
	DefaultMaxPackageSize = 500 << 20
)

// JobConfig is what a supervisor passes to its entrypoint in EnvJobConfig.
type JobConfig struct {
	SubmissionID string            `json:"submission_id"`
	RuntimeEnv   RuntimeEnv        `json:"runtime_env"`
	Metadata     map[string]string `json:"metadata"`
}

// RuntimeEnv is the part of Ray's runtime_env goray supports.
type RuntimeEnv struct {
	WorkingDir string            `json:"working_dir,omitempty"`
	EnvVars    map[string]string `json:"env_vars,omitempty"`
}

// DriverEnv returns what a driver started by a job supervisor adds to its
// JobInfo.Env: the job's env_vars, working_dir URI and submission id. It
// returns nil when configJSON is empty or not a job config.
func DriverEnv(configJSON string) map[string]string {
	if configJSON == "" {
		return nil
	}
	var c JobConfig
	if err := json.Unmarshal([]byte(configJSON), &c); err != nil || c.SubmissionID == "" {
		return nil
	}
	env := map[string]string{}
	for k, v := range c.RuntimeEnv.EnvVars {
		env[k] = v
	}
	env[KeySubmissionID] = c.SubmissionID
	if c.RuntimeEnv.WorkingDir != "" {
		env[KeyWorkingDir] = c.RuntimeEnv.WorkingDir
	}
	return env
}

// MaxPackageSize is the package size limit: GORAY_PACKAGE_MAX_SIZE bytes,
// else 500 MiB.
func MaxPackageSize() int64 {
	if v := os.Getenv(EnvMaxPackageSize); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return DefaultMaxPackageSize
}

// FileSize is one file of a package and its size.
type FileSize struct {
	Path string
	Size int64
}

// TooLargeError refuses a package over the size limit.
type TooLargeError struct {
	Limit, Size int64
	Largest     []FileSize // biggest first
	// AtLeast means Size is a lower bound (the upload was cut off).
	AtLeast bool
}

// ErrTooLarge matches every TooLargeError with errors.Is.
var ErrTooLarge = errors.New("runtimeenv: package too large")

func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

func (e *TooLargeError) Error() string {
	var b strings.Builder
	at := ""
	if e.AtLeast {
		at = "at least "
	}
	fmt.Fprintf(&b, "package size %s%s (%d bytes) is over the limit of %s (%d bytes; set %s to change it)",
		at, humanBytes(e.Size), e.Size, humanBytes(e.Limit), e.Limit, EnvMaxPackageSize)
	if len(e.Largest) > 0 {
		b.WriteString("; largest files:")
		for i, f := range e.Largest {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s (%s)", f.Path, humanBytes(f.Size))
		}
	}
	b.WriteString("; exclude large files with .gitignore or use a smaller working_dir")
	return b.String()
}

func largest(files []FileSize, n int) []FileSize {
	files = append([]FileSize(nil), files...)
	sort.Slice(files, func(a, b int) bool {
		if files[a].Size != files[b].Size {
			return files[a].Size > files[b].Size
		}
		return files[a].Path < files[b].Path
	})
	if len(files) > n {
		files = files[:n]
	}
	return files
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
