package ui

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// Series is one line of a chart.
type Series struct {
	Name   string
	Points []Point
}

// Point is a sample: unix seconds and a value.
type Point struct {
	T int64   `json:"t"`
	V float64 `json:"v"`
}

var palette = []string{"#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"}

// lineChart draws series as an SVG line chart with a time axis, a value
// axis in unit, a legend, and each point's value on hover. It needs no
// script and no external asset.
func lineChart(title, unit string, series []Series) template.HTML {
	const w, h, left, right, top, bottom = 560, 200, 56, 12, 24, 36
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s"><title>%s</title>`, w, h, template.HTMLEscapeString(title), template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="16" class="ctitle">%s</text>`, left, template.HTMLEscapeString(title))
	var t0, t1 int64 = math.MaxInt64, math.MinInt64
	vmax := 0.0
	n := 0
	for _, s := range series {
		for _, p := range s.Points {
			t0, t1 = min(t0, p.T), max(t1, p.T)
			vmax = max(vmax, p.V)
			n++
		}
	}
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="empty">no samples yet</text></svg>`, w/2-50, h/2)
		return template.HTML(b.String())
	}
	if t1 == t0 {
		t1 = t0 + 1
	}
	vmax = niceMaxIn(vmax, unit)
	if unit == "%" && vmax > 100 && vmax <= 200 {
		vmax = 100 // a busy host's 100.0x%: its axis still ends at 100%
	}
	x := func(t int64) float64 { return left + float64(t-t0)/float64(t1-t0)*float64(w-left-right) }
	y := func(v float64) float64 { return float64(h-bottom) - v/vmax*float64(h-top-bottom) }
	// axes and grid
	for i := 0; i <= 4; i++ {
		v := vmax * float64(i) / 4
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, left, w-right, y(v), y(v))
		fmt.Fprintf(&b, `<text class="ylab" x="%d" y="%.1f">%s</text>`, left-4, y(v)+4, fmtValue(v, unit))
	}
	ticks := min(4, t1-t0) // a span of a few seconds has fewer labels, none repeated
	for i := int64(0); i <= ticks; i++ {
		t := t0 + (t1-t0)*i/ticks
		anchor := "middle" // the outer labels stay inside the chart
		switch i {
		case 0:
			anchor = "start"
		case ticks:
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text class="xlab" x="%.1f" y="%d" text-anchor="%s">%s</text>`, x(t), h-bottom+16, anchor, time.Unix(t, 0).UTC().Format("15:04:05"))
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`, left, w-right, h-bottom, h-bottom)
	for i, s := range series {
		color := palette[i%len(palette)]
		var path strings.Builder
		for j, p := range s.Points {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, x(p.T), y(p.V))
		}
		fmt.Fprintf(&b, `<path class="line" d="%s" stroke="%s"/>`, strings.TrimSpace(path.String()), color)
		step := max(1, len(s.Points)/60) // hover targets: at most 60 per line
		for j := 0; j < len(s.Points); j += step {
			p := s.Points[j]
			fmt.Fprintf(&b, `<circle class="pt" cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s %s: %s</title></circle>`,
				x(p.T), y(p.V), color, template.HTMLEscapeString(s.Name), time.Unix(p.T, 0).UTC().Format("15:04:05"), fmtValue(p.V, unit))
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text class="legend" x="%d" y="%d">%s</text>`,
			left+i*130, h-10, color, left+i*130+14, h-1, template.HTMLEscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceMaxIn rounds an axis maximum up to a round number in the unit
// (bytes in powers of 1024).
func niceMaxIn(v float64, unit string) float64 {
	if unit != "bytes" && unit != "bytes/s" {
		return niceMax(v)
	}
	scale := 1.0
	for v/scale >= 1024 {
		scale *= 1024
	}
	return niceMax(v/scale) * scale
}

func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 4, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// fmtValue prints a value in its unit: bytes in KiB/MiB/GiB, percents,
// rates.
func fmtValue(v float64, unit string) string {
	switch unit {
	case "bytes", "bytes/s":
		suffix := ""
		if unit == "bytes/s" {
			suffix = "/s"
		}
		for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
			if math.Abs(v) < 1024 || u == "TiB" {
				return trim(v) + " " + u + suffix
			}
			v /= 1024
		}
	case "%":
		return trim(v) + "%"
	}
	return trim(v) + " " + unit
}

func trim(v float64) string {
	if v >= 100 || v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}
