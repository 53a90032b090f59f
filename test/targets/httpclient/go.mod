module httpclient

go 1.19
