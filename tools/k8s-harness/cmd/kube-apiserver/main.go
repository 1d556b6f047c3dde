// kube-apiserver built from the published k8s.io/kubernetes module, as upstream's
// cmd/kube-apiserver does.
package main

import (
	"os"
	_ "time/tzdata" // upstream imports it (CronJob timeZone validation)

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
