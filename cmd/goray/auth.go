package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/goray/goray/internal/auth"
)

func authTokenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get-auth-token",
		Short: "Print the cluster auth token this host uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, _, ok, err := auth.LookupToken()
			if err != nil {
				return err
			}
			if !ok {
				p, _ := auth.DefaultTokenPath()
				return errors.New("no auth token found (GORAY_AUTH_TOKEN, RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, " + p + "); goray start --head creates one")
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
}

// clusterToken is the token this command sends, "" when auth is disabled.
func clusterToken() (string, error) {
	if auth.Disabled() {
		return "", nil
	}
	tok, _, ok, err := auth.LookupToken()
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errors.New("no auth token: set GORAY_AUTH_TOKEN (goray get-auth-token on the head prints it) or GORAY_AUTH_MODE=disabled")
	}
	return tok, nil
}
