// Command charts runs the make targets of the Helm charts with Helm's Go
// packages (no helm binary):
//
//	charts generate            write the chart files made from config/ and the injector (make charts)
//	charts lint                helm lint --strict of every chart, with each values file it ships (make helm-lint)
//	charts package DIR [VER]   package every chart into DIR, at version VER (make helm-package)
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tandem-mesh/tandem/internal/charts"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "charts: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	// make runs it from the repository's root.
	root := "."
	if b, err := os.ReadFile("go.mod"); err != nil || !strings.HasPrefix(string(b), "module github.com/tandem-mesh/tandem\n") {
		return fmt.Errorf("run from the root of the tandem repository (make charts, make helm-lint, make helm-package)")
	}
	if len(args) == 0 {
		return fmt.Errorf("usage: charts generate | lint | package DIR [VERSION]")
	}
	switch args[0] {
	case "generate":
		return charts.Write(root)
	case "lint":
		failed := false
		for _, name := range charts.Names {
			dir := filepath.Join(root, "charts", name)
			sets, err := charts.ValuesFiles(dir)
			if err != nil {
				return err
			}
			for _, f := range sets {
				msgs, err := charts.LintWith(dir, f)
				for _, m := range msgs {
					fmt.Printf("%s (%s): %s\n", name, valuesName(f), m)
				}
				if err != nil {
					failed = true
					fmt.Printf("%s (%s): FAILED\n%v\n", name, valuesName(f), err)
				} else {
					fmt.Printf("%s (%s): lint --strict clean\n", name, valuesName(f))
				}
			}
		}
		if failed {
			return fmt.Errorf("lint failed")
		}
		return nil
	case "package":
		if len(args) < 2 || len(args) > 3 {
			return fmt.Errorf("usage: charts package DIR [VERSION]")
		}
		version := ""
		if len(args) == 3 {
			version = args[2]
		}
		if err := os.MkdirAll(args[1], 0o755); err != nil {
			return err
		}
		for _, name := range charts.Names {
			app := ""
			if version != "" {
				app = "v" + strings.TrimPrefix(version, "v")
			}
			p, err := charts.Package(filepath.Join(root, "charts", name), args[1], version, app)
			if err != nil {
				return err
			}
			fmt.Println(p)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q: accepted: generate, lint, package", args[0])
}

func valuesName(f string) string {
	if f == "" {
		return "values.yaml"
	}
	return filepath.Base(f)
}
