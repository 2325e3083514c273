// Package critest turns cri-tools' CRI validation (pkg/validate) and benchmark (pkg/benchmark)
// specs into one test binary, built with `go test -c -o critest`. Flags: cri-tools' own
// (-runtime-endpoint, -image-endpoint, -runtime-handler, -registry-prefix, -test-images-file,
// -report-dir, ...), ginkgo's (-ginkgo.focus, -ginkgo.skip, -ginkgo.v, ...), and ours below.
// There is no -parallel: run one binary per node instead.
package critest

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	_ "sigs.k8s.io/cri-tools/pkg/benchmark" // registers the benchmark specs
	"sigs.k8s.io/cri-tools/pkg/common"
	"sigs.k8s.io/cri-tools/pkg/framework"
	_ "sigs.k8s.io/cri-tools/pkg/validate" // registers the validation specs
	"sigs.k8s.io/cri-tools/pkg/version"
)

var (
	benchmark   = flag.Bool("benchmark", false, "Run the benchmark specs instead of the validation specs")
	showVersion = flag.Bool("version", false, "Print the cri-tools version the specs come from, and exit")
)

func init() { framework.RegisterFlags() }

func TestCRI(t *testing.T) {
	fmt.Printf("critest version: %s\n", version.Version)
	if *showVersion {
		return
	}
	applyConfigFile(t)
	set := setFlags()
	if *benchmark {
		mustSet(t, "ginkgo.focus", "benchmark")
		mustSet(t, "ginkgo.succinct", "true")
	} else {
		mustSet(t, "ginkgo.skip", "benchmark") // appends to any -ginkgo.skip given
		if !set["ginkgo.v"] && !set["ginkgo.succinct"] {
			mustSet(t, "ginkgo.v", "true") // spec names in CI logs
		}
	}
	gomega.RegisterFailHandler(ginkgo.Fail)
	ginkgo.RunSpecs(t, "CRI validation")
}

// applyConfigFile takes the endpoints from -config (crictl.yaml) where no flag names them.
func applyConfigFile(t *testing.T) {
	cwd, _ := os.Getwd()
	cfg, err := common.GetServerConfigFromFile(framework.TestContext.ConfigPath, cwd)
	if err != nil || cfg == nil {
		return // no config file: the flags (or their defaults) stand
	}
	set := setFlags()
	if !set["runtime-endpoint"] && cfg.RuntimeEndpoint != "" {
		framework.TestContext.RuntimeServiceAddr = cfg.RuntimeEndpoint
	}
	if !set["image-endpoint"] && cfg.ImageEndpoint != "" {
		framework.TestContext.ImageServiceAddr = cfg.ImageEndpoint
	}
	t.Logf("config %s: runtime %s, image %s", framework.TestContext.ConfigPath,
		framework.TestContext.RuntimeServiceAddr, framework.TestContext.ImageServiceAddr)
}

func setFlags() map[string]bool {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

func mustSet(t *testing.T, name, value string) {
	if err := flag.Set(name, value); err != nil {
		t.Fatalf("set -%s=%s: %v", name, value, err)
	}
}
