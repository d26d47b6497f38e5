module pgwire.com/client

go 1.21.6

require github.com/lib/pq v1.10.9
