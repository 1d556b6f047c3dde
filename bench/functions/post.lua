-- wrk script for the JSON-echo handler: every request POSTs the same body.
wrk.method = "POST"
wrk.body = '{"name":"bench","items":[1,2,3],"nested":{"ok":true}}'
wrk.headers["Content-Type"] = "application/json"
