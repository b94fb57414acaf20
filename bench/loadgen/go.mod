module auditlog/bench/loadgen

go 1.26
