package runner

import (
	"bufio"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// rule is one exclude pattern, scoped to the directory (relative to the
// source root, "" for the root) of the filter file that holds it.
type rule struct {
	dir     string
	pattern string
	dirOnly bool
	// anchored patterns (containing a slash) match the path relative to
	// dir; the others match any name below dir.
	anchored bool
}

func parseRule(dir, p string) (rule, bool) {
	p = strings.TrimSpace(p)
	if p == "" || strings.HasPrefix(p, "#") || strings.HasPrefix(p, "!") {
		return rule{}, false
	}
	r := rule{dir: dir}
	if strings.HasSuffix(p, "/") {
		r.dirOnly = true
		p = strings.TrimRight(p, "/")
	}
	if strings.Contains(p, "/") {
		r.anchored = true
		p = strings.TrimPrefix(p, "/")
	}
	r.pattern = p
	return r, p != ""
}

func (r rule) matches(rel string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	if r.dir != "" {
		if !strings.HasPrefix(rel, r.dir+"/") {
			return false
		}
		rel = rel[len(r.dir)+1:]
	}
	if r.anchored {
		ok, _ := path.Match(r.pattern, rel)
		return ok
	}
	ok, _ := path.Match(r.pattern, path.Base(rel))
	return ok
}

// walkSource calls fn for every path under root (root itself as "."),
// parents before children, skipping what opt excludes, as rsync's
// --exclude and dir-merge filters would. A root that is a file is passed
// as ".".
func walkSource(root string, opt SyncOptions, fn func(rel string, info fs.FileInfo) error) error {
	var rules []rule
	for _, e := range opt.Exclude {
		if r, ok := parseRule("", e); ok {
			rules = append(rules, r)
		}
	}
	return filepath.Walk(root, func(p string, info fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if rel != "." {
			for _, r := range rules {
				if r.matches(rel, info.IsDir()) {
					if info.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
			}
		}
		if info.IsDir() {
			dir := rel
			if dir == "." {
				dir = ""
			}
			for _, ff := range opt.FilterFiles {
				f, err := os.Open(filepath.Join(p, ff))
				if err != nil {
					continue
				}
				sc := bufio.NewScanner(f)
				for sc.Scan() {
					if r, ok := parseRule(dir, sc.Text()); ok {
						rules = append(rules, r)
					}
				}
				f.Close()
			}
		}
		return fn(rel, info)
	})
}

// rsyncFilterArgs renders opt as rsync arguments.
func rsyncFilterArgs(opt SyncOptions) []string {
	var args []string
	for _, e := range opt.Exclude {
		args = append(args, "--exclude="+e)
	}
	for _, f := range opt.FilterFiles {
		args = append(args, "--filter=dir-merge,- "+f)
	}
	return args
}
