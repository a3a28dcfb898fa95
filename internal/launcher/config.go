package launcher

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/launcher/runner"
	"github.com/goray/goray/internal/provider/local"
)

// Bootstrap file names on the head (Ray's ~/ray_bootstrap_config.yaml and
// ~/ray_bootstrap_key.pem).
const (
	BootstrapConfig = clusterconfig.BootstrapConfigPath
	BootstrapKey    = "~/goray_bootstrap_key.pem"
)

// Overrides are the command-line changes to a config, applied before it
// is parsed so that defaults follow them: -n, --min-workers,
// --max-workers.
type Overrides struct {
	ClusterName string
	MinWorkers  *int
	MaxWorkers  *int
}

// LoadConfig reads a cluster config, applies the overrides and validates
// it. With a config cache (useCache) the bootstrapped config of an
// identical input is read from <tmp>/goray-config-<sha1> instead, like
// Ray's; cached reports whether it was.
func LoadConfig(path string, o Overrides, useCache bool) (c *clusterconfig.Config, cached string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("cluster config: %w", err)
	}
	if data, err = override(data, o); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	sum := sha1.Sum(data)
	cachePath := filepath.Join(os.TempDir(), "goray-config-"+hex.EncodeToString(sum[:]))
	if useCache {
		if b, err := os.ReadFile(cachePath); err == nil {
			if c, err := clusterconfig.Parse(b); err == nil {
				return c, cachePath, nil
			}
		}
	}
	c, err = clusterconfig.Parse(data)
	if err != nil {
		var ce *clusterconfig.Error
		if errors.As(err, &ce) {
			e := *ce
			e.File = path
			return nil, "", &e
		}
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	if err := checkLauncher(c); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	if b, err := c.YAML(); err == nil {
		os.WriteFile(cachePath, b, 0o600)
	}
	return c, "", nil
}

// checkLauncher checks what every launcher command needs beyond the
// schema. Local files (the key, file mount sources) are not checked here:
// down, exec and the like do not need them; up checks them
// (CheckLocalFiles) and a missing key fails where SSH is used, naming
// the file.
func checkLauncher(c *clusterconfig.Config) error {
	switch c.Provider.Type {
	case "local":
		if c.Provider.CoordinatorAddress != "" {
			return errors.New("provider.coordinator_address: goray up does not support the coordinator mode of the local provider; list the hosts in head_ip and worker_ips")
		}
		if c.Auth.SSHPrivateKey == "" {
			return errors.New("auth.ssh_private_key is required by provider.type \"local\" (the key goray up and the head use to reach the hosts)")
		}
	case "process", "docker":
	default:
		return fmt.Errorf("provider.type %q: goray up supports local, docker and process", c.Provider.Type)
	}
	if c.Docker.ContainerName != "" {
		return fmt.Errorf("docker.container_name %q: goray up does not run setup inside a container on the hosts yet; "+
			"remove the docker section (with provider.type docker every node already is a container)", c.Docker.ContainerName)
	}
	return nil
}

// CheckLocalFiles checks the files on this machine that goray up copies:
// the SSH key (a readable private key) and the file mounts' sources.
func CheckLocalFiles(c *clusterconfig.Config) error {
	if k := c.Auth.SSHPrivateKey; k != "" {
		path := runner.HomePath(k, homeDir())
		pem, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("auth.ssh_private_key %s: %w", path, errors.Unwrap(err))
		}
		if _, err := ssh.ParsePrivateKey(pem); err != nil {
			return fmt.Errorf("auth.ssh_private_key %s: %w", path, err)
		}
	}
	for remote, l := range c.FileMounts {
		if _, err := os.Stat(runner.HomePath(l, homeDir())); err != nil {
			return fmt.Errorf("file_mounts: %s -> %s: %w", l, remote, err)
		}
	}
	return nil
}

func homeDir() string {
	h, _ := os.UserHomeDir()
	return h
}

// override rewrites the YAML document's keys for the overrides.
func override(data []byte, o Overrides) ([]byte, error) {
	if o.ClusterName == "" && o.MinWorkers == nil && o.MaxWorkers == nil {
		return data, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("want a mapping at the top level")
	}
	root := doc.Content[0]
	if o.ClusterName != "" {
		set(root, "cluster_name", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: o.ClusterName})
	}
	if o.MaxWorkers != nil {
		if *o.MaxWorkers < 0 {
			return nil, fmt.Errorf("--max-workers %d must not be negative", *o.MaxWorkers)
		}
		set(root, "max_workers", intNode(*o.MaxWorkers))
	}
	if o.MinWorkers != nil {
		if *o.MinWorkers < 0 {
			return nil, fmt.Errorf("--min-workers %d must not be negative", *o.MinWorkers)
		}
		types := get(root, "available_node_types")
		if types == nil || types.Kind != yaml.MappingNode || len(types.Content) == 0 {
			set(root, "min_workers", intNode(*o.MinWorkers)) // the legacy layout's single worker type
		} else {
			head := ""
			if h := get(root, "head_node_type"); h != nil {
				head = h.Value
			}
			var workers []*yaml.Node
			var names []string
			for i := 0; i+1 < len(types.Content); i += 2 {
				if types.Content[i].Value != head {
					workers = append(workers, types.Content[i+1])
					names = append(names, types.Content[i].Value)
				}
			}
			if len(workers) != 1 || workers[0].Kind != yaml.MappingNode {
				return nil, fmt.Errorf("--min-workers needs a config with one worker node type (this one has %d: %v); set min_workers per type in available_node_types", len(names), names)
			}
			set(workers[0], "min_workers", intNode(*o.MinWorkers))
		}
	}
	return yaml.Marshal(&doc)
}

func intNode(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func get(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func set(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

// HeadConfig is the config the head runs its autoscaler with (Ray's
// bootstrapped remote config): the key is ~/goray_bootstrap_key.pem, the
// proxy command is dropped, and file mounts name the head's own copies.
func HeadConfig(c *clusterconfig.Config) *clusterconfig.Config {
	h := *c
	if h.Auth.SSHPrivateKey != "" {
		h.Auth.SSHPrivateKey = BootstrapKey
	}
	h.Auth.SSHProxyCommand = ""
	h.FileMounts = map[string]string{}
	for remote := range c.FileMounts {
		h.FileMounts[remote] = remote
	}
	return &h
}

// StatePathLocal is the process provider's launcher state file on this
// machine.
func statePathLocal(tempRoot, cluster string) string {
	return filepath.Join(tempRoot, local.StateFile(cluster))
}
