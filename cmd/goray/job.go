package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coder/websocket"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/goray/goray/internal/client"
	"github.com/goray/goray/internal/jobs"
	"github.com/goray/goray/internal/jobs/runtimeenv"
	"github.com/goray/goray/proto/rpcpb"
)

// jobClient talks to the Jobs REST API of a cluster's dashboard.
type jobClient struct {
	base  string // http(s)://host:port
	token string
	http  *http.Client
}

// dashboardURL resolves --address (else GORAY_ADDRESS, RAY_ADDRESS, the
// head on this host): http(s)://host:port is the dashboard itself; a GCS
// host:port, goray:// or ray:// address is looked up in the cluster.
func dashboardURL(ctx context.Context, flag string) (string, error) {
	for _, a := range []string{flag, os.Getenv("GORAY_ADDRESS"), os.Getenv("RAY_ADDRESS")} {
		if strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://") {
			if _, err := url.Parse(a); err != nil {
				return "", fmt.Errorf("bad address %q: %w", a, err)
			}
			return strings.TrimRight(a, "/"), nil
		}
		if rest, ok, err := client.ParseAddress(a); ok {
			if err != nil {
				return "", err
			}
			tok, err := clusterToken()
			if err != nil {
				return "", err
			}
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			dash, err := client.DashboardAddress(ctx, rest, tok)
			if err != nil {
				return "", err
			}
			return "http://" + dash, nil
		}
		if a != "" {
			break
		}
	}
	addr, err := resolveAddress(flag, "")
	if err != nil {
		return "", err
	}
	gcs, closeConn, err := gcsClient(addr)
	if err != nil {
		return "", err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := gcs.KVGet(ctx, &rpcpb.KVRequest{Namespace: jobs.DashboardNamespace, Key: jobs.DashboardKey})
	if err != nil {
		return "", fmt.Errorf("cannot look up the dashboard address in the cluster at %s: %w", addr, err)
	}
	if !r.Found {
		return "", fmt.Errorf("the cluster at %s publishes no dashboard address", addr)
	}
	return "http://" + string(r.Value), nil
}

func newJobClient(ctx context.Context, address string) (*jobClient, error) {
	base, err := dashboardURL(ctx, address)
	if err != nil {
		return nil, err
	}
	tok, err := clusterToken()
	if err != nil {
		return nil, err
	}
	return &jobClient{base: base, token: tok, http: &http.Client{}}, nil
}

func (c *jobClient) header() http.Header {
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	return h
}

// do sends a request; a non-2xx answer is an error carrying the body.
func (c *jobClient) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header = c.header()
	if body != nil && method != "PUT" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("job submission server at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &httpError{code: resp.StatusCode, msg: strings.TrimSpace(string(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("job submission server answered %s: %w", b, err)
		}
	}
	return nil
}

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string {
	switch e.code {
	case http.StatusUnauthorized:
		return "the cluster requires an auth token (" + e.msg + "); set GORAY_AUTH_TOKEN, see goray get-auth-token"
	case http.StatusForbidden:
		return "the cluster refused the auth token (" + e.msg + ")"
	}
	return fmt.Sprintf("%s (HTTP %d)", e.msg, e.code)
}

func (c *jobClient) details(ctx context.Context, id string) (*jobs.JobDetails, error) {
	var d jobs.JobDetails
	if err := c.do(ctx, "GET", "/api/jobs/"+url.PathEscape(id), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// tail writes the job's log as it comes until the server closes.
func (c *jobClient) tail(ctx context.Context, id string, w io.Writer) error {
	u := "ws" + strings.TrimPrefix(c.base, "http") + "/api/jobs/" + url.PathEscape(id) + "/logs/tail"
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: c.header()})
	if err != nil {
		if resp != nil && resp.StatusCode/100 != 1 {
			return &httpError{code: resp.StatusCode, msg: resp.Status}
		}
		return fmt.Errorf("log tail of job %s: %w", id, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(-1)
	for {
		_, b, err := conn.Read(ctx)
		if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
			return nil
		}
		if err != nil {
			return fmt.Errorf("log tail of job %s: %w", id, err)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
}

// waitTerminal polls the job until it reaches a terminal status.
func (c *jobClient) waitTerminal(ctx context.Context, id string) (*jobs.JobDetails, error) {
	for {
		d, err := c.details(ctx, id)
		if err != nil {
			return nil, err
		}
		if d.Status.Terminal() {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)

// shellQuote quotes a word for sh as Python's shlex.quote does.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// entrypointOf joins the words after --: one word is passed to the shell
// verbatim, several are each quoted (Ray's shlex.join).
func entrypointOf(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shellQuote(w)
	}
	return strings.Join(q, " ")
}

// uploadWorkingDir packages a local directory and uploads it unless the
// cluster has it already; it returns the package URI.
func (c *jobClient) uploadWorkingDir(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	pkg, err := runtimeenv.Scan(dir)
	if err != nil {
		return "", err
	}
	path := "/api/packages/gcs/" + strings.TrimPrefix(pkg.URI, "gcs://")
	err = c.do(ctx, "GET", path, nil, nil)
	var he *httpError
	if err == nil {
		fmt.Fprintf(stderr, "Package %s already exists, skipping upload.\n", pkg.URI)
		return pkg.URI, nil
	}
	if !errors.As(err, &he) || he.code != http.StatusNotFound {
		return "", err
	}
	tmp, err := os.CreateTemp("", "goray-pkg-*.zip")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := pkg.WriteZip(tmp, runtimeenv.MaxPackageSize())
	if err != nil {
		return "", fmt.Errorf("working_dir %s: %w", dir, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "Uploading package %s (%d bytes).\n", pkg.URI, n)
	if err := c.do(ctx, "PUT", path, tmp, nil); err != nil {
		return "", fmt.Errorf("upload working_dir %s: %w", dir, err)
	}
	return pkg.URI, nil
}

func jobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Submit, inspect and stop jobs (Ray's Jobs API)",
	}
	cmd.AddCommand(jobSubmitCmd(), jobStatusCmd(), jobLogsCmd(), jobStopCmd(), jobListCmd(), jobDeleteCmd())
	return cmd
}

const addressHelp = "cluster address: http(s)://HOST:PORT (dashboard), HOST:PORT (GCS), goray://HOST:10001 or ray:// (the client server) (default: GORAY_ADDRESS, RAY_ADDRESS, the head on this host)"

func parseJSONFlag(name, value string, into any) error {
	if value == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(value), into); err != nil {
		return fmt.Errorf("--%s: not valid JSON of the right shape: %v", name, err)
	}
	return nil
}

func jobSubmitCmd() *cobra.Command {
	var (
		address, submissionID, jobID, workingDir, runtimeEnvFile, runtimeEnvJSON, metadataJSON string
		resourcesJSON, labelsJSON                                                              string
		numCPUs, numGPUs                                                                       float64
		memory                                                                                 int64
		noWait                                                                                 bool
	)
	cmd := &cobra.Command{
		Use:   "submit [flags] -- COMMAND...",
		Short: "Submit a job: its entrypoint command runs on the cluster",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if at := cmd.ArgsLenAtDash(); at > 0 {
				return fmt.Errorf("unexpected arguments before --: %q (put the entrypoint after --)", args[:at])
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			ctx := cmd.Context()
			if runtimeEnvFile != "" && runtimeEnvJSON != "" {
				return errors.New("--runtime-env and --runtime-env-json are mutually exclusive")
			}
			if submissionID != "" && jobID != "" && submissionID != jobID {
				return errors.New("--job-id is the deprecated name of --submission-id; give one")
			}
			if submissionID == "" {
				submissionID = jobID
			}
			req := map[string]any{"entrypoint": entrypointOf(args)}
			renv := map[string]any{}
			if runtimeEnvFile != "" {
				b, err := os.ReadFile(runtimeEnvFile)
				if err != nil {
					return fmt.Errorf("--runtime-env: %w", err)
				}
				if err := yaml.Unmarshal(b, &renv); err != nil {
					return fmt.Errorf("--runtime-env %s: %v", runtimeEnvFile, err)
				}
			}
			if err := parseJSONFlag("runtime-env-json", runtimeEnvJSON, &renv); err != nil {
				return err
			}
			var meta map[string]string
			if err := parseJSONFlag("metadata-json", metadataJSON, &meta); err != nil {
				return err
			}
			var res map[string]float64
			if err := parseJSONFlag("entrypoint-resources", resourcesJSON, &res); err != nil {
				return err
			}
			var labels map[string]string
			if err := parseJSONFlag("entrypoint-label-selector", labelsJSON, &labels); err != nil {
				return err
			}
			c, err := newJobClient(ctx, address)
			if err != nil {
				return err
			}
			if workingDir != "" {
				renv["working_dir"] = workingDir
			}
			if wd, ok := renv["working_dir"].(string); ok && !strings.Contains(wd, "://") {
				uri, err := c.uploadWorkingDir(ctx, wd, errOut)
				if err != nil {
					return err
				}
				renv["working_dir"] = uri
			}
			if len(renv) > 0 {
				req["runtime_env"] = renv
			}
			if submissionID != "" {
				req["submission_id"] = submissionID
			}
			if meta != nil {
				req["metadata"] = meta
			}
			if cmd.Flags().Changed("entrypoint-num-cpus") {
				req["entrypoint_num_cpus"] = numCPUs
			}
			if cmd.Flags().Changed("entrypoint-num-gpus") {
				req["entrypoint_num_gpus"] = numGPUs
			}
			if cmd.Flags().Changed("entrypoint-memory") {
				req["entrypoint_memory"] = memory
			}
			if res != nil {
				req["entrypoint_resources"] = res
			}
			if labels != nil {
				req["entrypoint_label_selector"] = labels
			}
			body, _ := json.Marshal(req)
			var sub struct {
				SubmissionID string `json:"submission_id"`
			}
			if err := c.do(ctx, "POST", "/api/jobs/", bytes.NewReader(body), &sub); err != nil {
				return err
			}
			id := sub.SubmissionID
			fmt.Fprintf(errOut, "Job '%s' submitted successfully\n", id)
			if noWait {
				fmt.Fprintf(errOut, "Query the logs of the job:\n  goray job logs %s\nQuery the status of the job:\n  goray job status %s\nRequest the job to be stopped:\n  goray job stop %s\n", id, id, id)
				fmt.Fprintln(out, id)
				return nil
			}
			fmt.Fprintln(errOut, "Tailing logs until the job exits (disable with --no-wait):")
			if err := c.tail(ctx, id, out); err != nil {
				return err
			}
			d, err := c.waitTerminal(ctx, id)
			if err != nil {
				return err
			}
			return reportFinal(out, d)
		},
	}
	f := cmd.Flags()
	f.StringVar(&address, "address", "", addressHelp)
	f.StringVar(&submissionID, "submission-id", "", "submission id of the job (default: generated raysubmit_...)")
	f.StringVar(&jobID, "job-id", "", "deprecated name of --submission-id")
	f.MarkHidden("job-id")
	f.StringVar(&workingDir, "working-dir", "", "local directory (zipped and uploaded) or package URI to run the job in")
	f.StringVar(&runtimeEnvFile, "runtime-env", "", "YAML or JSON file with the job's runtime_env")
	f.StringVar(&runtimeEnvJSON, "runtime-env-json", "", "the job's runtime_env as JSON")
	f.StringVar(&metadataJSON, "metadata-json", "", "job metadata as a JSON object of strings")
	f.Float64Var(&numCPUs, "entrypoint-num-cpus", 0, "CPUs the entrypoint needs")
	f.Float64Var(&numGPUs, "entrypoint-num-gpus", 0, "GPUs the entrypoint needs")
	f.Int64Var(&memory, "entrypoint-memory", 0, "memory in bytes the entrypoint needs")
	f.StringVar(&resourcesJSON, "entrypoint-resources", "", "custom resources the entrypoint needs, as JSON")
	f.StringVar(&labelsJSON, "entrypoint-label-selector", "", "node labels the entrypoint's node must have, as JSON")
	f.BoolVar(&noWait, "no-wait", false, "do not stream the logs and wait for the job to finish")
	return cmd
}

// errJobFailed makes the command exit 1 after its report.
var errJobFailed = errors.New("job failed")

func reportFinal(out io.Writer, d *jobs.JobDetails) error {
	id := deref(d.SubmissionID)
	switch d.Status {
	case jobs.Succeeded:
		fmt.Fprintf(out, "Job '%s' succeeded\n", id)
	case jobs.Stopped:
		fmt.Fprintf(out, "Job '%s' was stopped\n", id)
	case jobs.Failed:
		fmt.Fprintf(out, "Job '%s' failed\n", id)
		if d.Message != nil {
			fmt.Fprintf(out, "Status message: %s\n", *d.Message)
		}
		return fmt.Errorf("job '%s' failed: %w", id, errJobFailed)
	default:
		fmt.Fprintf(out, "Job '%s' is %s\n", id, d.Status)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func jobStatusCmd() *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "status JOB_ID",
		Short: "Print a job's status",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newJobClient(cmd.Context(), address)
			if err != nil {
				return err
			}
			d, err := c.details(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Status for job '%s': %s\n", args[0], d.Status)
			if d.Message != nil {
				fmt.Fprintf(out, "Status message: %s\n", *d.Message)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "", addressHelp)
	return cmd
}

func jobLogsCmd() *cobra.Command {
	var address string
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs JOB_ID",
		Short: "Print a job's driver output (with -f, follow it until the job ends)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newJobClient(cmd.Context(), address)
			if err != nil {
				return err
			}
			if follow {
				return c.tail(cmd.Context(), args[0], cmd.OutOrStdout())
			}
			var l struct {
				Logs string `json:"logs"`
			}
			if err := c.do(cmd.Context(), "GET", "/api/jobs/"+url.PathEscape(args[0])+"/logs", nil, &l); err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), l.Logs)
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "", addressHelp)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "stream the logs until the job ends")
	return cmd
}

func jobStopCmd() *cobra.Command {
	var address string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "stop JOB_ID",
		Short: "Stop a job (SIGTERM to its processes, SIGKILL after 3s)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newJobClient(cmd.Context(), address)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var r struct {
				Stopped bool `json:"stopped"`
			}
			if err := c.do(cmd.Context(), "POST", "/api/jobs/"+url.PathEscape(args[0])+"/stop", nil, &r); err != nil {
				return err
			}
			if !r.Stopped {
				d, err := c.details(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "Job '%s' has already ended: %s\n", args[0], d.Status)
				return nil
			}
			fmt.Fprintf(out, "Attempting to stop job '%s'\n", args[0])
			if noWait {
				return nil
			}
			d, err := c.waitTerminal(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Job '%s' is %s\n", args[0], d.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "", addressHelp)
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the job to end")
	return cmd
}

func jobListCmd() *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the cluster's jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newJobClient(cmd.Context(), address)
			if err != nil {
				return err
			}
			var l []jobs.JobDetails
			if err := c.do(cmd.Context(), "GET", "/api/jobs/", nil, &l); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SUBMISSION_ID\tJOB_ID\tTYPE\tSTATUS\tSTART_TIME\tENTRYPOINT")
			for _, d := range l {
				start := "-"
				if d.StartTime != nil {
					start = time.UnixMilli(*d.StartTime).Format("2006-01-02 15:04:05")
				}
				sid, jid := deref(d.SubmissionID), deref(d.JobID)
				if sid == "" {
					sid = "-"
				}
				if jid == "" {
					jid = "-"
				}
				ep := d.Entrypoint
				if len(ep) > 60 {
					ep = ep[:57] + "..."
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sid, jid, d.Type, d.Status, start, strings.ReplaceAll(ep, "\n", " "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&address, "address", "", addressHelp)
	return cmd
}

func jobDeleteCmd() *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "delete JOB_ID",
		Short: "Delete the record of an ended job (its logs stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newJobClient(cmd.Context(), address)
			if err != nil {
				return err
			}
			var r struct {
				Deleted bool `json:"deleted"`
			}
			if err := c.do(cmd.Context(), "DELETE", "/api/jobs/"+url.PathEscape(args[0]), nil, &r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Job '%s' deleted successfully\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "", addressHelp)
	return cmd
}
