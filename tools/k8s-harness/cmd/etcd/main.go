// etcd embedded from the module graph Kubernetes pins, as upstream's
// apiserver test server does. Single member, loopback only, throw-away data.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dir := flag.String("data-dir", "harness.etcd", "")
	c := flag.String("listen-client-url", "http://127.0.0.1:23790", "")
	p := flag.String("listen-peer-url", "http://127.0.0.1:23800", "")
	flag.Parse()
	cu, err := url.Parse(*c)
	if err != nil {
		log.Fatal(err)
	}
	pu, err := url.Parse(*p)
	if err != nil {
		log.Fatal(err)
	}

	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "harness", *dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "warn"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	<-e.Server.ReadyNotify()
	log.Printf("etcd ready on %s", cu)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-e.Err():
		log.Fatal(err)
	case <-sig:
	}
}
