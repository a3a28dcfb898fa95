package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/goray/goray/internal/autoscaler/request"
	"github.com/goray/goray/proto/rpcpb"
)

func requestResourcesCmd() *cobra.Command {
	var address, tempDir, bundlesJSON string
	var cpus int
	cmd := &cobra.Command{
		Use:   "request-resources [--num-cpus N | --bundles JSON]",
		Short: "Ask the autoscaler to scale to at least this capacity (Ray's request_resources); no arguments clear the request",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			if f.Changed("num-cpus") && f.Changed("bundles") {
				return errors.New("--num-cpus and --bundles exclude each other")
			}
			var (
				bundles []map[string]float64
				err     error
			)
			if bundlesJSON != "" {
				if err := json.Unmarshal([]byte(bundlesJSON), &bundles); err != nil {
					return fmt.Errorf(`--bundles: want a JSON list of resource maps such as '[{"CPU": 2}, {"GPU": 1}]': %v`, err)
				}
			} else if bundles, err = request.CPUs(cpus); err != nil {
				return err
			}
			b, err := request.Encode(bundles)
			if err != nil {
				return err
			}
			return withGCS(address, tempDir, 10*time.Second, func(ctx context.Context, gcs rpcpb.GcsServiceClient, addr string) error {
				if _, err := gcs.KVPut(ctx, &rpcpb.KVRequest{Namespace: request.Namespace, Key: request.Key, Value: b, Overwrite: true}); err != nil {
					return fmt.Errorf("cannot reach the GCS at %s: %w", addr, err)
				}
				if len(bundles) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "Cleared the resource request.")
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "Requested %d bundle(s) from the autoscaler.\n", len(bundles))
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&cpus, "num-cpus", 0, "request N bundles of {\"CPU\": 1}")
	cmd.Flags().StringVar(&bundlesJSON, "bundles", "", `JSON list of resource bundles, e.g. '[{"CPU": 2}, {"GPU": 1}]'`)
	cmd.Flags().StringVar(&address, "address", "", "GCS address of the cluster (default: GORAY_ADDRESS or the head on this host)")
	cmd.Flags().StringVar(&tempDir, "temp-dir", "", "temp root (default $GORAY_TEMP or /tmp/goray)")
	return cmd
}
