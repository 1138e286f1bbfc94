-- The thin reference's POST: a fixed small JSON body.
wrk.method = "POST"
wrk.body = '{"site":"demo","article":"bench","reaction":"happy"}'
wrk.headers["Content-Type"] = "application/json"
