module auditlog/bench/race

go 1.26
