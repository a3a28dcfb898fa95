package rayjob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"time"
)

// ErrJobNotFound is returned when the cluster does not know the job.
var ErrJobNotFound = errors.New("rayjob: job not found in the cluster")

// JobRequest is the body of POST /api/jobs/ (Ray's Jobs API).
type JobRequest struct {
	Entrypoint          string             `json:"entrypoint"`
	SubmissionID        string             `json:"submission_id,omitempty"`
	RuntimeEnv          map[string]any     `json:"runtime_env,omitempty"`
	Metadata            map[string]string  `json:"metadata,omitempty"`
	EntrypointNumCPUs   float32            `json:"entrypoint_num_cpus,omitempty"`
	EntrypointNumGPUs   float32            `json:"entrypoint_num_gpus,omitempty"`
	EntrypointResources map[string]float32 `json:"entrypoint_resources,omitempty"`
}

// JobInfo is what GET /api/jobs/{id} answers.
type JobInfo struct {
	JobID        string `json:"job_id"`
	SubmissionID string `json:"submission_id"`
	Status       string `json:"status"`
	Entrypoint   string `json:"entrypoint"`
	Message      string `json:"message"`
	StartTime    uint64 `json:"start_time"`
	EndTime      uint64 `json:"end_time"`
}

// APIError is an answer of the Jobs API that is not 2xx.
type APIError struct {
	Method, Path string
	Code         int
	Status       string // "403 Forbidden"
	Body         string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("rayjob: %s %s: %s: %s", e.Method, e.Path, e.Status, e.Body)
}

// apiProblem says in words what went wrong asking the Jobs API at url,
// naming the address but no request (job id, method) and no local port, so
// that it stays the same while the problem does: status.message and Events
// change with the problem, not with each poll.
func apiProblem(url string, err error) string {
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/")
	var ae *APIError
	if errors.As(err, &ae) {
		body := strings.TrimPrefix(ae.Body, http.StatusText(ae.Code)+": ") // the head's "Forbidden: Invalid ..."
		if len(body) > 256 {
			body = body[:256] + "..."
		}
		if body == "" {
			return fmt.Sprintf("the Jobs API at %s answered %s", url, ae.Status)
		}
		return fmt.Sprintf("the Jobs API at %s answered %s: %s", url, ae.Status, body)
	}
	var ue *neturl.Error
	if errors.As(err, &ue) {
		err = ue.Err // drop `Get "http://.../api/jobs/<id>"`
	}
	if oe, ok := err.(*net.OpError); ok && oe.Source != nil {
		c := *oe
		c.Source = nil // the local port changes with each connection
		err = &c
	}
	return fmt.Sprintf("cannot reach the Jobs API at %s: %v", url, err)
}

// Dashboard talks to a cluster's Jobs REST API.
type Dashboard interface {
	SubmitJob(ctx context.Context, req JobRequest) (string, error)
	GetJobInfo(ctx context.Context, id string) (*JobInfo, error)
	StopJob(ctx context.Context, id string) error
}

// HTTPDashboard is the Jobs API over HTTP, with the cluster token.
type HTTPDashboard struct {
	URL    string // http://HOST:PORT
	Token  string
	Client *http.Client
}

func (d *HTTPDashboard) do(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	url := strings.TrimSuffix(d.URL, "/") + path
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if d.Token != "" {
		req.Header.Set("Authorization", "Bearer "+d.Token)
	}
	c := d.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, &APIError{Method: method, Path: path, Code: resp.StatusCode, Status: resp.Status, Body: strings.TrimSpace(string(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("rayjob: %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// SubmitJob submits the job and returns its submission id.
func (d *HTTPDashboard) SubmitJob(ctx context.Context, req JobRequest) (string, error) {
	var out struct {
		JobID        string `json:"job_id"`
		SubmissionID string `json:"submission_id"`
	}
	if _, err := d.do(ctx, http.MethodPost, "/api/jobs/", req, &out); err != nil {
		return "", err
	}
	if out.SubmissionID != "" {
		return out.SubmissionID, nil
	}
	return out.JobID, nil
}

// GetJobInfo returns the job's details; ErrJobNotFound on 404.
func (d *HTTPDashboard) GetJobInfo(ctx context.Context, id string) (*JobInfo, error) {
	var info JobInfo
	code, err := d.do(ctx, http.MethodGet, "/api/jobs/"+id, nil, &info)
	if code == http.StatusNotFound {
		return nil, ErrJobNotFound
	}
	if err != nil {
		return nil, err
	}
	return &info, nil
}

// StopJob asks the cluster to stop the job; ErrJobNotFound on 404. A
// "stopped": false answer is fine only when the job is already terminal
// (as KubeRay's client has it).
func (d *HTTPDashboard) StopJob(ctx context.Context, id string) error {
	var out struct {
		Stopped bool `json:"stopped"`
	}
	code, err := d.do(ctx, http.MethodPost, "/api/jobs/"+id+"/stop", nil, &out)
	if code == http.StatusNotFound {
		return ErrJobNotFound
	}
	if err != nil || out.Stopped {
		return err
	}
	info, err := d.GetJobInfo(ctx, id)
	if err != nil {
		return err
	}
	switch info.Status {
	case "STOPPED", "SUCCEEDED", "FAILED":
		return nil
	}
	return fmt.Errorf("rayjob: job %s was not stopped; it is %s", id, info.Status)
}
