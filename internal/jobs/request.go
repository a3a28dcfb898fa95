package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/goray/goray/internal/jobs/runtimeenv"
)

// BadRequestError is invalid client input (HTTP 400).
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

func badf(format string, a ...any) error { return &BadRequestError{fmt.Sprintf(format, a...)} }

// SubmitRequest is Ray's JobSubmitRequest, validated.
type SubmitRequest struct {
	Entrypoint              string
	SubmissionID            string
	RuntimeEnv              map[string]any
	Metadata                map[string]string
	EntrypointNumCPUs       float64
	EntrypointNumGPUs       float64
	EntrypointMemory        int64
	EntrypointResources     map[string]float64
	EntrypointLabelSelector map[string]string
}

// ParseSubmitRequest parses a submission body as JSON (whatever its
// Content-Type). Null-valued keys are dropped first, as Ray does; unknown
// keys, wrong types and a missing entrypoint are errors naming the field.
func ParseSubmitRequest(body []byte) (*SubmitRequest, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, badf("Invalid JSON in the job submission request: %v", err)
	}
	if raw == nil {
		return nil, badf("The job submission request must be a JSON object")
	}
	for k, v := range raw {
		if string(bytes.TrimSpace(v)) == "null" {
			delete(raw, k)
		}
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	req := &SubmitRequest{}
	var jobID string
	for _, k := range keys {
		v := raw[k]
		var err error
		switch k {
		case "entrypoint":
			err = decodeField(k, v, &req.Entrypoint, "a string")
		case "submission_id":
			err = decodeField(k, v, &req.SubmissionID, "a string")
		case "job_id":
			err = decodeField(k, v, &jobID, "a string")
		case "runtime_env":
			err = decodeField(k, v, &req.RuntimeEnv, "an object")
		case "metadata":
			err = decodeField(k, v, &req.Metadata, "an object of strings to strings")
		case "entrypoint_num_cpus":
			err = decodeNonNegative(k, v, &req.EntrypointNumCPUs)
		case "entrypoint_num_gpus":
			err = decodeNonNegative(k, v, &req.EntrypointNumGPUs)
		case "entrypoint_memory":
			var f float64
			if err = decodeNonNegative(k, v, &f); err == nil {
				if f != math.Trunc(f) || f > math.MaxInt64/2 {
					err = badf("Field 'entrypoint_memory' must be an integer number of bytes, got %s", v)
				}
				req.EntrypointMemory = int64(f)
			}
		case "entrypoint_resources":
			if err = decodeField(k, v, &req.EntrypointResources, "an object of resource names to numbers"); err == nil {
				for name, q := range req.EntrypointResources {
					if q < 0 || math.IsNaN(q) {
						err = badf("Field 'entrypoint_resources' has a negative quantity for %q", name)
					}
					if name == "" {
						err = badf("Field 'entrypoint_resources' has an empty resource name")
					}
				}
			}
		case "entrypoint_label_selector":
			err = decodeField(k, v, &req.EntrypointLabelSelector, "an object of strings to strings")
		default:
			err = badf("Unknown field '%s' in the job submission request", k)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, ok := raw["entrypoint"]; !ok {
		return nil, badf("Field 'entrypoint' is required")
	}
	if strings.TrimSpace(req.Entrypoint) == "" {
		return nil, badf("Field 'entrypoint' must not be empty")
	}
	if jobID != "" {
		if req.SubmissionID != "" && req.SubmissionID != jobID {
			return nil, badf("Fields 'submission_id' (%q) and 'job_id' (%q) differ; 'job_id' is the deprecated name of 'submission_id'", req.SubmissionID, jobID)
		}
		req.SubmissionID = jobID
	}
	if _, ok := raw["submission_id"]; ok || jobID != "" {
		if err := validSubmissionID(req.SubmissionID); err != nil {
			return nil, err
		}
	}
	if err := validRuntimeEnv(req.RuntimeEnv); err != nil {
		return nil, err
	}
	return req, nil
}

func decodeField(name string, v json.RawMessage, into any, want string) error {
	if err := json.Unmarshal(v, into); err != nil {
		return badf("Field '%s' must be %s, got %s", name, want, abbreviate(v))
	}
	return nil
}

func decodeNonNegative(name string, v json.RawMessage, into *float64) error {
	if err := json.Unmarshal(v, into); err != nil {
		return badf("Field '%s' must be a number, got %s", name, abbreviate(v))
	}
	if *into < 0 {
		return badf("Field '%s' must not be negative, got %s", name, v)
	}
	return nil
}

func abbreviate(v json.RawMessage) string {
	s := string(v)
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return s
}

func validSubmissionID(id string) error {
	switch {
	case id == "":
		return badf("Field 'submission_id' must not be empty")
	case len(id) > 200:
		return badf("Field 'submission_id' is longer than 200 characters")
	case id == "." || id == "..":
		return badf("Field 'submission_id' must not be %q", id)
	case strings.ContainsFunc(id, func(r rune) bool { return r == '/' || r == '\\' || r < 0x20 || r == 0x7f }):
		return badf("Field 'submission_id' %q must not contain '/', '\\' or control characters", id)
	}
	return nil
}

// validRuntimeEnv accepts the runtime_env fields goray supports.
func validRuntimeEnv(env map[string]any) error {
	for k, v := range env {
		if v == nil {
			delete(env, k)
		}
	}
	for k, v := range env {
		switch k {
		case "working_dir":
			s, ok := v.(string)
			if !ok {
				return badf("Field 'runtime_env.working_dir' must be a string, got %T", v)
			}
			if err := runtimeenv.ValidURI(s); err != nil {
				return badf("Field 'runtime_env.working_dir': %v", err)
			}
		case "env_vars":
			m, ok := v.(map[string]any)
			if !ok {
				return badf("Field 'runtime_env.env_vars' must be an object of strings to strings")
			}
			for name, val := range m {
				if _, ok := val.(string); !ok {
					return badf("Field 'runtime_env.env_vars' value of %q must be a string, got %T", name, val)
				}
				if name == "" || strings.ContainsAny(name, "=\x00") {
					return badf("Field 'runtime_env.env_vars' has an invalid variable name %q", name)
				}
			}
		default:
			return badf("Field 'runtime_env.%s' is not supported by goray (supported: working_dir, env_vars)", k)
		}
	}
	return nil
}
