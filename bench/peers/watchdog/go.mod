module kubeless.bench/watchdog

go 1.21
