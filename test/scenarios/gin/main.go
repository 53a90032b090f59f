// A gin service whose P99 explodes: three routes answer in about 5ms; with
// -fault, after the warm-up, half of the GET /api/items/:id requests take
// 600ms.
package main

import (
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/gin-gonic/gin"

	"scenarios/scenario"
)

func main() {
	scenario.Parse()
	gin.SetMode(gin.ReleaseMode)
	gin.DefaultWriter = io.Discard
	r := gin.New()
	var n atomic.Int64
	r.GET("/api/items/:id", func(c *gin.Context) {
		if scenario.Faulty() && n.Add(1)%2 == 0 {
			scenario.Sleep(600)
		} else {
			scenario.Sleep(5)
		}
		c.JSON(http.StatusOK, gin.H{"id": c.Param("id")})
	})
	r.GET("/api/users/:id", func(c *gin.Context) {
		scenario.Sleep(5)
		c.JSON(http.StatusOK, gin.H{"id": c.Param("id")})
	})
	r.GET("/api/health", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	addr := scenario.Serve("127.0.0.1:0", r)
	c := &http.Client{}
	paths := []string{"/api/items/%d", "/api/items/%d", "/api/users/%d", "/api/health"}
	i := make([]int, len(paths))
	scenario.Loop(len(paths), 50*1e6, func(w int) {
		i[w]++
		p := paths[w]
		if w < 3 {
			p = fmt.Sprintf(p, 1000+i[w])
		}
		scenario.Get(c, "http://"+addr+p)
	})
}
