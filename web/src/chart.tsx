import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Curve {
  label: string;
  xs: number[];
  ys: number[];
}

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

/**
 * One line per task on one chart (uPlot: canvas, fast with many points). uPlot wants one x array
 * for every series, so the tasks' x values are merged and each series has gaps (null) where it
 * has no point; drag to zoom, double-click to zoom out. New points (a running job's progress, a
 * reload) go into the chart drawn already, keeping a zoom; the chart is made anew only when its
 * series, axes or colours change.
 */
export function ProgressChart(props: { curves: Curve[]; xLabel: string; yLabel: string; time: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const plotRef = useRef<{ plot: uPlot; data: uPlot.AlignedData } | null>(null);
  const dark = useDarkScheme();
  const data = useMemo(() => alignedData(props.curves), [props.curves]);
  // What makes a new chart: the series (their labels), the axes and the theme.
  const shape = JSON.stringify([props.curves.map((c) => c.label), props.xLabel, props.yLabel, props.time, dark]);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const axis = { stroke: dark ? '#c9d1d9' : '#24292f', grid: { stroke: dark ? '#30363d' : '#e5e7eb' }, ticks: { stroke: dark ? '#30363d' : '#e5e7eb' } };
    const plot = new uPlot(
      {
        width: Math.max(280, el.clientWidth),
        height: 320,
        scales: { x: { time: props.time } },
        axes: [
          { ...axis, label: props.xLabel },
          { ...axis, label: props.yLabel, size: 60 },
        ],
        series: [
          { label: props.xLabel },
          ...props.curves.map((curve, i) => ({ label: curve.label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true, points: { show: false } })),
        ],
        cursor: { drag: { x: true, y: false } },
        // The x range shown, on the element: what a zoom changed (the tests read it).
        hooks: { setScale: [(u, key) => key === 'x' && el.setAttribute('data-x-range', `${u.scales.x!.min},${u.scales.x!.max}`)] },
      },
      data,
      el,
    );
    plotRef.current = { plot, data };
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 320 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
      plotRef.current = null;
    };
    // The chart is made anew for a new shape only; its data follow in the effect below.
  }, [shape]);
  useEffect(() => {
    const drawn = plotRef.current;
    if (!drawn || drawn.data === data) return;
    // Zoomed in (the x range is narrower than the points drawn): the range stays; otherwise it follows the points.
    const xs = drawn.data[0];
    const { min, max } = drawn.plot.scales.x!;
    const zoomed = xs.length > 0 && min !== undefined && max !== undefined && (min > xs[0]! || max < xs[xs.length - 1]!);
    if (zoomed) {
      // uPlot neither rescales nor redraws for data set without a scale reset: the range is set again, which does both (y fitted to what is shown).
      drawn.plot.setData(data, false);
      drawn.plot.setScale('x', { min: min!, max: max! });
    } else drawn.plot.setData(data);
    drawn.data = data;
  }, [data]);
  return <div class="chart" ref={box} data-series={props.curves.length} data-points={props.curves.map((c) => c.xs.length).join(',')} />;
}

/** The curves as uPlot wants them: one x array (every task's x values, merged), then each task's y values, null where it has no point. */
function alignedData(curves: Curve[]): uPlot.AlignedData {
  const xs = [...new Set(curves.flatMap((c) => c.xs))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const data: (number | null)[][] = [xs];
  for (const curve of curves) {
    const ys: (number | null)[] = new Array(xs.length).fill(null);
    curve.xs.forEach((x, i) => {
      ys[at.get(x)!] = curve.ys[i]!;
    });
    data.push(ys);
  }
  return data as uPlot.AlignedData;
}

/** Whether the system's theme is dark, following changes (the canvas's colours are drawn, not styled). */
function useDarkScheme(): boolean {
  const query = matchMedia('(prefers-color-scheme: dark)');
  const [dark, setDark] = useState(query.matches);
  useEffect(() => {
    const update = () => setDark(query.matches);
    query.addEventListener('change', update);
    return () => query.removeEventListener('change', update);
  }, []);
  return dark;
}
