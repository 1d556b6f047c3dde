// kube-controller-manager built from the published k8s.io/kubernetes module, as upstream's
// cmd/kube-controller-manager does.
package main

import (
	"os"
	_ "time/tzdata" // upstream imports it (CronJob timeZone validation)

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() { os.Exit(cli.Run(app.NewControllerManagerCommand())) }
