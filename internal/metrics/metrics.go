// Package metrics serves a node's Prometheus metrics on its
// --metrics-export-port, under Ray's metric names so Ray's dashboards and
// alerts read them: ray_resources (logical resources USED and AVAILABLE),
// ray_object_store_memory, ray_object_store_available_memory,
// ray_object_store_num_local_objects and ray_node_cpu_count, plus the Go
// runtime and process collectors. It lives outside internal/node so the
// goray library, which starts private nodes, does not link the Prometheus
// client; the CLI hands Handler to the node.
package metrics

import (
	"net/http"
	"runtime"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goray/goray/internal/node"
)

// Source is the node the metrics come from.
type Source interface {
	MetricsSnapshot() node.MetricsSnapshot
}

var (
	resourcesDesc = prometheus.NewDesc("ray_resources",
		"Logical resources of the node, USED or AVAILABLE.", []string{"Name", "State", "InstanceId", "SessionName"}, nil)
	storeMemoryDesc = prometheus.NewDesc("ray_object_store_memory",
		"Object store memory in bytes by location.", []string{"Location", "InstanceId", "SessionName"}, nil)
	storeAvailableDesc = prometheus.NewDesc("ray_object_store_available_memory",
		"Object store memory in bytes free for new objects.", []string{"InstanceId", "SessionName"}, nil)
	storeObjectsDesc = prometheus.NewDesc("ray_object_store_num_local_objects",
		"Objects held in this node's object store.", []string{"InstanceId", "SessionName"}, nil)
	cpuCountDesc = prometheus.NewDesc("ray_node_cpu_count",
		"CPUs of the machine the node runs on.", []string{"InstanceId", "SessionName"}, nil)
)

type collector struct{ src Source }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{resourcesDesc, storeMemoryDesc, storeAvailableDesc, storeObjectsDesc, cpuCountDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.MetricsSnapshot()
	names := make([]string, 0, len(s.Total))
	for n := range s.Total {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		avail := s.Available[n]
		ch <- prometheus.MustNewConstMetric(resourcesDesc, prometheus.GaugeValue, s.Total[n]-avail, n, "USED", s.InstanceID, s.SessionName)
		ch <- prometheus.MustNewConstMetric(resourcesDesc, prometheus.GaugeValue, avail, n, "AVAILABLE", s.InstanceID, s.SessionName)
	}
	ch <- prometheus.MustNewConstMetric(storeMemoryDesc, prometheus.GaugeValue, float64(s.StoreUsed), "MMAP_SHM", s.InstanceID, s.SessionName)
	ch <- prometheus.MustNewConstMetric(storeMemoryDesc, prometheus.GaugeValue, float64(s.StoreSpilled), "SPILLED", s.InstanceID, s.SessionName)
	ch <- prometheus.MustNewConstMetric(storeAvailableDesc, prometheus.GaugeValue, float64(max(s.StoreCapacity-s.StoreUsed, 0)), s.InstanceID, s.SessionName)
	ch <- prometheus.MustNewConstMetric(storeObjectsDesc, prometheus.GaugeValue, float64(s.StoreObjects), s.InstanceID, s.SessionName)
	ch <- prometheus.MustNewConstMetric(cpuCountDesc, prometheus.GaugeValue, float64(runtime.NumCPU()), s.InstanceID, s.SessionName)
}

// Handler serves src's metrics in Prometheus' text format on every path
// (Prometheus asks /metrics).
func Handler(src Source) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{src}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
