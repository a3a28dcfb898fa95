// Package jobs is goray's job submission: the job manager on the head
// (Ray's Jobs REST API on the dashboard port), the supervisor on every
// node's agent that runs entrypoints, and the records they keep in the
// GCS KV.
//
// A submission is written PENDING by the manager, which then picks a node
// (the head, or one whose resources fit the entrypoint resources) and
// hands the job to that node's supervisor over the agent's HTTP API. From
// the hand-off on, that supervisor is the only writer of the record, so a
// terminal status, once written, is never overwritten.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/jobs/runtimeenv"
	"github.com/goray/goray/proto/rpcpb"
)

// Status is a job's status (Ray's JobStatus).
type Status string

const (
	Pending   Status = "PENDING"
	Running   Status = "RUNNING"
	Stopped   Status = "STOPPED"
	Succeeded Status = "SUCCEEDED"
	Failed    Status = "FAILED"
)

// Terminal reports whether a status can no longer change.
func (s Status) Terminal() bool { return s == Stopped || s == Succeeded || s == Failed }

// Error types of FAILED jobs.
const (
	ErrorTypeRuntimeEnvSetup = "RUNTIME_ENV_SETUP_FAILED"
	ErrorTypeEntrypoint      = "JOB_ENTRYPOINT_COMMAND_ERROR"
	ErrorTypeStartTimeout    = "JOB_SUPERVISOR_ACTOR_START_TIMEOUT"
	ErrorTypeSupervisorDied  = "JOB_SUPERVISOR_ACTOR_DIED"
)

// KV layout (Ray's): namespace "job", key prefix + submission id.
const (
	KVNamespace = "job"
	KVKeyPrefix = "_ray_internal_job_info_"
	// DashboardNamespace/DashboardKey hold the dashboard's host:port.
	DashboardNamespace = "dashboard"
	DashboardKey       = "dashboard"
)

// Record is a submission job as stored in the GCS KV.
type Record struct {
	SubmissionID            string             `json:"submission_id"`
	Status                  Status             `json:"status"`
	Entrypoint              string             `json:"entrypoint"`
	Message                 string             `json:"message,omitempty"`
	ErrorType               string             `json:"error_type,omitempty"`
	StartTime               int64              `json:"start_time"`
	EndTime                 int64              `json:"end_time,omitempty"`
	Metadata                map[string]string  `json:"metadata"`
	RuntimeEnv              map[string]any     `json:"runtime_env"`
	EntrypointNumCPUs       float64            `json:"entrypoint_num_cpus,omitempty"`
	EntrypointNumGPUs       float64            `json:"entrypoint_num_gpus,omitempty"`
	EntrypointMemory        int64              `json:"entrypoint_memory,omitempty"`
	EntrypointResources     map[string]float64 `json:"entrypoint_resources,omitempty"`
	EntrypointLabelSelector map[string]string  `json:"entrypoint_label_selector,omitempty"`
	DriverAgentHTTPAddress  string             `json:"driver_agent_http_address,omitempty"`
	DriverNodeID            string             `json:"driver_node_id,omitempty"`
	DriverNodeIP            string             `json:"driver_node_ip,omitempty"`
	DriverPID               int                `json:"driver_pid,omitempty"`
	DriverExitCode          *int               `json:"driver_exit_code,omitempty"`
}

// Demand is the resource shape the entrypoint asks for ({} when none).
func (r *Record) Demand() map[string]float64 {
	d := map[string]float64{}
	for k, v := range r.EntrypointResources {
		if v > 0 {
			d[k] = v
		}
	}
	if r.EntrypointNumCPUs > 0 {
		d["CPU"] = r.EntrypointNumCPUs
	}
	if r.EntrypointNumGPUs > 0 {
		d["GPU"] = r.EntrypointNumGPUs
	}
	if r.EntrypointMemory > 0 {
		d["memory"] = float64(r.EntrypointMemory)
	}
	return d
}

// workingDir and envVars read the supported runtime_env fields.
func (r *Record) workingDir() string {
	s, _ := r.RuntimeEnv["working_dir"].(string)
	return s
}

func (r *Record) config() runtimeenv.JobConfig {
	c := runtimeenv.JobConfig{SubmissionID: r.SubmissionID, Metadata: r.Metadata}
	c.RuntimeEnv.WorkingDir = r.workingDir()
	if m, ok := r.RuntimeEnv["env_vars"].(map[string]any); ok {
		c.RuntimeEnv.EnvVars = map[string]string{}
		for k, v := range m {
			c.RuntimeEnv.EnvVars[k], _ = v.(string)
		}
	}
	return c
}

// DriverInfo is JobDetails.driver_info.
type DriverInfo struct {
	ID            string `json:"id"`
	NodeIPAddress string `json:"node_ip_address"`
	PID           string `json:"pid"`
}

// JobDetails is Ray's JobDetails; every key is present, null when unknown.
type JobDetails struct {
	Type                   string            `json:"type"`
	JobID                  *string           `json:"job_id"`
	SubmissionID           *string           `json:"submission_id"`
	DriverInfo             *DriverInfo       `json:"driver_info"`
	Status                 Status            `json:"status"`
	Entrypoint             string            `json:"entrypoint"`
	Message                *string           `json:"message"`
	ErrorType              *string           `json:"error_type"`
	StartTime              *int64            `json:"start_time"`
	EndTime                *int64            `json:"end_time"`
	Metadata               map[string]string `json:"metadata"`
	RuntimeEnv             map[string]any    `json:"runtime_env"`
	DriverAgentHTTPAddress *string           `json:"driver_agent_http_address"`
	DriverNodeID           *string           `json:"driver_node_id"`
	DriverExitCode         *int              `json:"driver_exit_code"`
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func int64p(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

// details renders a submission record, with the GCS job of its driver
// when one registered.
func (r *Record) details(driver *rpcpb.JobInfo) JobDetails {
	d := JobDetails{
		Type: "SUBMISSION", SubmissionID: strp(r.SubmissionID), Status: r.Status, Entrypoint: r.Entrypoint,
		Message: strp(r.Message), ErrorType: strp(r.ErrorType), StartTime: int64p(r.StartTime), EndTime: int64p(r.EndTime),
		Metadata: r.Metadata, RuntimeEnv: r.RuntimeEnv, DriverAgentHTTPAddress: strp(r.DriverAgentHTTPAddress),
		DriverNodeID: strp(r.DriverNodeID), DriverExitCode: r.DriverExitCode,
	}
	if driver != nil {
		d.JobID = strp(driver.JobId)
		d.DriverInfo = &DriverInfo{ID: driver.JobId, NodeIPAddress: driver.DriverIp, PID: fmt.Sprint(driver.DriverPid)}
	}
	return d
}

// driverDetails renders a program that connected as a driver itself.
func driverDetails(j *rpcpb.JobInfo) JobDetails {
	st := Running
	if j.IsDead {
		st = Succeeded
	}
	return JobDetails{
		Type: "DRIVER", JobID: strp(j.JobId), Status: st, Entrypoint: j.Entrypoint,
		DriverInfo: &DriverInfo{ID: j.JobId, NodeIPAddress: j.DriverIp, PID: fmt.Sprint(j.DriverPid)},
		StartTime:  int64p(j.StartTimeMs), EndTime: int64p(j.EndTimeMs), Metadata: map[string]string{}, RuntimeEnv: map[string]any{},
	}
}

// idAlphabet is Ray's: letters and digits without I, l, o, O and 0.
const idAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz123456789"

// NewSubmissionID returns "raysubmit_" and 16 random characters.
func NewSubmissionID() string {
	b := make([]byte, 16)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(idAlphabet))))
		if err != nil {
			panic(err)
		}
		b[i] = idAlphabet[n.Int64()]
	}
	return "raysubmit_" + string(b)
}

// ErrNotFound is returned for an unknown job.
var ErrNotFound = errors.New("jobs: job not found")

// store reads and writes records in the GCS KV.
type store struct{ gcs rpcpb.GcsServiceClient }

func key(sid string) string { return KVKeyPrefix + sid }

func gcsErr(err error) error { return fmt.Errorf("jobs: GCS: %s", status.Convert(err).Message()) }

// create writes a new record; false when the id is taken.
func (s store) create(ctx context.Context, r *Record) (bool, error) {
	b, _ := json.Marshal(r)
	rep, err := s.gcs.KVPut(ctx, &rpcpb.KVRequest{Namespace: KVNamespace, Key: key(r.SubmissionID), Value: b})
	if err != nil {
		return false, gcsErr(err)
	}
	return rep.Added, nil
}

func (s store) put(ctx context.Context, r *Record) error {
	b, _ := json.Marshal(r)
	if _, err := s.gcs.KVPut(ctx, &rpcpb.KVRequest{Namespace: KVNamespace, Key: key(r.SubmissionID), Value: b, Overwrite: true}); err != nil {
		return gcsErr(err)
	}
	return nil
}

func (s store) get(ctx context.Context, sid string) (*Record, error) {
	rep, err := s.gcs.KVGet(ctx, &rpcpb.KVRequest{Namespace: KVNamespace, Key: key(sid)})
	if err != nil {
		return nil, gcsErr(err)
	}
	if !rep.Found {
		return nil, ErrNotFound
	}
	r := &Record{}
	if err := json.Unmarshal(rep.Value, r); err != nil {
		return nil, fmt.Errorf("jobs: corrupt record of job %s: %w", sid, err)
	}
	return r, nil
}

func (s store) list(ctx context.Context) ([]*Record, error) {
	rep, err := s.gcs.KVKeys(ctx, &rpcpb.KVRequest{Namespace: KVNamespace, Key: KVKeyPrefix})
	if err != nil {
		return nil, gcsErr(err)
	}
	var out []*Record
	for _, k := range rep.Keys {
		r, err := s.get(ctx, k[len(KVKeyPrefix):])
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (s store) del(ctx context.Context, sid string) error {
	if _, err := s.gcs.KVDel(ctx, &rpcpb.KVRequest{Namespace: KVNamespace, Key: key(sid)}); err != nil {
		return gcsErr(err)
	}
	return nil
}
