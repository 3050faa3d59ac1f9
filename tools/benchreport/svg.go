package main

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// palette is the colours of the lines and bars, in order.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

// Line is one series of a line chart.
type Line struct {
	Name   string
	Points [][2]float64 // x, y; sorted by x
}

// LineChart is a chart of lines, x linear or logarithmic.
type LineChart struct {
	Title, XLabel, YLabel string
	LogX                  bool
	Lines                 []Line
}

const (
	chartW, chartH                     = 780, 360
	padLeft, padRight, padTop, padBott = 70, 230, 36, 50
)

// SVG draws the chart as a standalone SVG document.
func (c LineChart) SVG() string {
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, l := range c.Lines {
		for _, p := range l.Points {
			xmin, xmax, ymax = math.Min(xmin, p[0]), math.Max(xmax, p[0]), math.Max(ymax, p[1])
		}
	}
	if math.IsInf(xmin, 1) {
		xmin, xmax = 0, 1
	}
	var xticks []float64
	if c.LogX {
		xmin, xmax = math.Floor(math.Log10(math.Max(xmin, 1e-9))), math.Ceil(math.Log10(math.Max(xmax, 1e-9)))
		if xmax == xmin {
			xmax++
		}
		for e := xmin; e <= xmax; e++ {
			xticks = append(xticks, e)
		}
	} else {
		xmin = math.Min(xmin, 0)
		xticks, xmax = niceTicks(xmax)
	}
	yticks, ymax := niceTicks(ymax)
	plotW, plotH := float64(chartW-padLeft-padRight), float64(chartH-padTop-padBott)
	px := func(x float64) float64 {
		if c.LogX {
			x = math.Log10(math.Max(x, 1e-9))
		}
		return padLeft + (x-xmin)/(xmax-xmin)*plotW
	}
	py := func(y float64) float64 { return padTop + plotH - y/ymax*plotH }

	var b strings.Builder
	header(&b, c.Title)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", padLeft, padTop, plotW, plotH)
	for _, t := range yticks {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", padLeft, y, padLeft+plotW, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", padLeft-6, y, tickLabel(t))
	}
	for _, t := range xticks {
		x, label := padLeft+(t-xmin)/(xmax-xmin)*plotW, tickLabel(t)
		if c.LogX {
			label = tickLabel(math.Pow(10, t))
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.0f" stroke="#e5e5e5"/>`+"\n", x, padTop, x, padTop+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x, padTop+plotH+16, label)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`+"\n", padLeft+plotW/2, chartH-10, esc(c.XLabel))
	fmt.Fprintf(&b, `<text x="16" y="%.0f" text-anchor="middle" transform="rotate(-90 16 %.0f)">%s</text>`+"\n", padTop+plotH/2, padTop+plotH/2, esc(c.YLabel))
	for i, l := range c.Lines {
		color := palette[i%len(palette)]
		var pts []string
		for _, p := range l.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		if len(l.Points) <= 12 {
			for _, p := range l.Points {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(p[0]), py(p[1]), color)
			}
		}
		ly := padTop + 8 + i*18
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", chartW-padRight+12, ly, chartW-padRight+32, ly, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d" dominant-baseline="middle">%s</text>`+"\n", chartW-padRight+38, ly, esc(l.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// Bar is one bar of a bar chart, with the target it should reach (0: none).
type Bar struct {
	Name          string
	Value, Target float64
}

// BarChart is a horizontal bar chart of ratios.
type BarChart struct {
	Title, XLabel string
	Bars          []Bar
}

// SVG draws the chart as a standalone SVG document.
func (c BarChart) SVG() string {
	const rowH, labelW = 22, 330
	h := padTop + len(c.Bars)*rowH + padBott
	xmax := 0.0
	for _, bar := range c.Bars {
		xmax = math.Max(xmax, math.Max(bar.Value, bar.Target))
	}
	ticks, xmax := niceTicks(xmax)
	plotW := float64(chartW - labelW - 30)
	px := func(v float64) float64 { return labelW + v/xmax*plotW }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, h, chartW, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" text-anchor="middle" font-size="14" font-weight="bold">%s</text>`+"\n", chartW/2, esc(c.Title))
	bottom := padTop + len(c.Bars)*rowH
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e5e5e5"/>`+"\n", px(t), padTop, px(t), bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px(t), bottom+16, tickLabel(t))
	}
	for i, bar := range c.Bars {
		y := padTop + i*rowH
		color := palette[0]
		if bar.Target > 0 && bar.Value < bar.Target {
			color = palette[1]
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", labelW-6, y+rowH/2, esc(bar.Name))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", labelW, y+4, px(bar.Value)-labelW, rowH-8, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" dominant-baseline="middle">%s</text>`+"\n", px(bar.Value)+4, y+rowH/2, fmtNum(bar.Value))
		if bar.Target > 0 {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black" stroke-dasharray="3,2"/>`+"\n", px(bar.Target), y+1, px(bar.Target), y+rowH-1)
		}
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`+"\n", labelW+plotW/2, bottom+34, esc(c.XLabel))
	b.WriteString("</svg>\n")
	return b.String()
}

func header(b *strings.Builder, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(b, `<text x="%d" y="20" text-anchor="middle" font-size="14" font-weight="bold">%s</text>`+"\n", (chartW-padRight+padLeft)/2, esc(title))
}

// niceTicks returns about five round tick values from 0 to at least max,
// and the last of them.
func niceTicks(max float64) ([]float64, float64) {
	if max <= 0 || math.IsNaN(max) || math.IsInf(max, 0) {
		max = 1
	}
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []float64
	for i := 0; ; i++ {
		// Rounded to 12 digits, so that 3*0.2 is 0.6.
		t, _ := strconv.ParseFloat(strconv.FormatFloat(float64(i)*step, 'g', 12, 64), 64)
		ticks = append(ticks, t)
		if t >= max-step*1e-9 {
			return ticks, t
		}
	}
}

func tickLabel(v float64) string {
	switch {
	case v >= 1e6 && math.Mod(v, 1e6) == 0:
		return fmt.Sprintf("%.0fM", v/1e6)
	case v >= 1e3 && math.Mod(v, 1e3) == 0:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func esc(s string) string { return html.EscapeString(s) }
