package raylet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// cgroupCPUMax is the cgroup v2 CPU quota file; a variable so tests can point it elsewhere.
var cgroupCPUMax = "/sys/fs/cgroup/cpu.max"

// DetectCPUs returns the number of logical CPUs this node may use:
// runtime.NumCPU(), lowered to ceil(quota/period) when the cgroup v2 file
// /sys/fs/cgroup/cpu.max sets a smaller quota (as Ray does for containers).
func DetectCPUs() int {
	n := runtime.NumCPU()
	if q := cgroupCPUQuota(cgroupCPUMax); q > 0 && q < n {
		return q
	}
	return n
}

// cgroupCPUQuota parses a cpu.max file ("<quota> <period>" or "max <period>")
// and returns ceil(quota/period), or 0 when there is no usable quota.
func cgroupCPUQuota(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	quota, err1 := strconv.ParseFloat(f[0], 64)
	period, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || quota <= 0 || period <= 0 {
		return 0
	}
	return int(math.Ceil(quota / period))
}

// DetectGPUs counts the lines of `nvidia-smi -L` that start with "GPU "
// (nvidia-smi is looked up on PATH). It returns 0 when nvidia-smi is missing,
// fails, or runs longer than 10 seconds.
func DetectGPUs() int {
	path, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-L").Output()
	if err != nil {
		return 0
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "GPU ") {
			n++
		}
	}
	return n
}

// DetectMemory returns MemAvailable from /proc/meminfo in bytes, falling back
// to MemTotal, or 0 when neither can be read.
func DetectMemory() int64 { return memInfo("/proc/meminfo") }

func memInfo(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	vals := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		// Lines look like "MemAvailable:   12345678 kB".
		k, rest, ok := strings.Cut(line, ":")
		f := strings.Fields(rest)
		if !ok || len(f) == 0 {
			continue
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		vals[k] = v
	}
	if v, ok := vals["MemAvailable"]; ok {
		return v
	}
	return vals["MemTotal"]
}

// reservedResources are set through dedicated flags, as in Ray's `ray start`.
var reservedResources = map[string]string{
	"CPU":                 "--num-cpus",
	"GPU":                 "--num-gpus",
	"memory":              "--memory",
	"object_store_memory": "--object-store-memory",
}

// ParseResources parses Ray's `--resources` JSON object of resource name to a
// non-negative number, e.g. `{"Resource1": 4}`. "" and "{}" give an empty map.
// As in Ray, CPU, GPU, memory and object_store_memory are rejected (use
// --num-cpus, --num-gpus, --memory, --object-store-memory). Errors name the key.
func ParseResources(s string) (map[string]float64, error) {
	res := map[string]float64{}
	err := parseJSONObject("--resources", s, func(k string, v json.Token) error {
		if k == "" {
			return errors.New("raylet: --resources: empty resource name")
		}
		if flag, ok := reservedResources[k]; ok {
			return fmt.Errorf("raylet: --resources: %q cannot be set here; use %s", k, flag)
		}
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("raylet: --resources: %q: value %v is not a number", k, v)
		}
		f, err := n.Float64()
		if err != nil || f < 0 {
			return fmt.Errorf("raylet: --resources: %q: value %s must be a non-negative number", k, n)
		}
		res[k] = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// ParseLabels parses node labels given as "k=v,k2=v2" or as a JSON object of
// string to string; "" and "{}" give an empty map. Keys and values are trimmed.
// Keys may use [A-Za-z0-9._/-], values [A-Za-z0-9._-] (empty allowed), in the
// spirit of Kubernetes labels; keys starting with "ray.io/" are reserved for
// Ray's default labels. Errors name the bad item.
func ParseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	add := func(item, k, v string) error {
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case k == "":
			return fmt.Errorf("raylet: --labels: %q: empty key", item)
		case strings.HasPrefix(k, "ray.io/"):
			return fmt.Errorf("raylet: --labels: %q: the ray.io/ key prefix is reserved", item)
		case !validLabel(k, "._/-"):
			return fmt.Errorf("raylet: --labels: %q: key may only contain letters, digits and ._/-", item)
		case !validLabel(v, "._-"):
			return fmt.Errorf("raylet: --labels: %q: value may only contain letters, digits and ._-", item)
		}
		if _, dup := labels[k]; dup {
			return fmt.Errorf("raylet: --labels: %q: duplicate key %q", item, k)
		}
		labels[k] = v
		return nil
	}
	if t := strings.TrimSpace(s); strings.HasPrefix(t, "{") {
		err := parseJSONObject("--labels", t, func(k string, v json.Token) error {
			str, ok := v.(string)
			if !ok {
				return fmt.Errorf("raylet: --labels: %q: value %v is not a string", k, v)
			}
			return add(k+"="+str, k, str)
		})
		if err != nil {
			return nil, err
		}
		return labels, nil
	} else if t == "" {
		return labels, nil
	}
	for _, item := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("raylet: --labels: %q: missing '=' (want key=value)", strings.TrimSpace(item))
		}
		if err := add(strings.TrimSpace(item), k, v); err != nil {
			return nil, err
		}
	}
	return labels, nil
}

func validLabel(s, extra string) bool {
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(extra, r)) {
			return false
		}
	}
	return true
}

// parseJSONObject walks a flat JSON object, calling fn with each key and its
// scalar value token (numbers as json.Number). "" is an empty object; nested
// values are passed as json.Delim so fn rejects them.
func parseJSONObject(flag, s string, fn func(key string, v json.Token) error) error {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	bad := func(err error) error { return fmt.Errorf("raylet: %s: %q is not a JSON object: %v", flag, s, err) }
	if tok, err := dec.Token(); err != nil {
		return bad(err)
	} else if tok != json.Delim('{') {
		return bad(fmt.Errorf("starts with %v", tok))
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		vt, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		if err := fn(kt.(string), vt); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return bad(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad(errors.New("trailing data"))
	}
	return nil
}
