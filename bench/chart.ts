/**
 * The benchmark's SVG chart, hand-drawn: the diamond latency distribution (with and without
 * LISTEN) as cumulative curves, and the scale-out curve (tasks/s over worker processes).
 */
export interface ChartData {
  latency: { listen: number[]; noListen: number[] };
  scaleOut: { workers: number; tasksPerSecond: number }[];
  commitRate: number;
}

const W = 380;
const H = 240;
const PAD = { left: 52, right: 14, top: 30, bottom: 40 };

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;");
}

function ticks(max: number, count = 5): number[] {
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  return Array.from({ length: Math.floor(max / step) + 1 }, (_, i) => i * step);
}

function panel(
  x0: number,
  title: string,
  xLabel: string,
  yLabel: string,
  xMax: number,
  yMax: number,
  series: { name: string; color: string; points: [number, number][]; dots?: boolean }[],
  xTicks: number[],
): string {
  const pw = W - PAD.left - PAD.right;
  const ph = H - PAD.top - PAD.bottom;
  const sx = (x: number) => x0 + PAD.left + (x / xMax) * pw;
  const sy = (y: number) => PAD.top + ph - (y / yMax) * ph;
  const out: string[] = [];
  out.push(
    `<text x="${x0 + W / 2}" y="18" text-anchor="middle" font-weight="bold">${esc(title)}</text>`,
  );
  for (const t of ticks(yMax)) {
    out.push(
      `<line x1="${sx(0)}" x2="${sx(xMax)}" y1="${sy(t)}" y2="${sy(t)}" stroke="#ddd"/>`,
      `<text x="${sx(0) - 4}" y="${sy(t) + 4}" text-anchor="end">${t}</text>`,
    );
  }
  for (const t of xTicks) {
    out.push(`<text x="${sx(t)}" y="${sy(0) + 16}" text-anchor="middle">${t}</text>`);
  }
  out.push(
    `<line x1="${sx(0)}" x2="${sx(xMax)}" y1="${sy(0)}" y2="${sy(0)}" stroke="#333"/>`,
    `<line x1="${sx(0)}" x2="${sx(0)}" y1="${sy(0)}" y2="${sy(yMax)}" stroke="#333"/>`,
    `<text x="${x0 + PAD.left + pw / 2}" y="${H - 6}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(${x0 + 12},${PAD.top + ph / 2}) rotate(-90)" text-anchor="middle">${
      esc(yLabel)
    }</text>`,
  );
  series.forEach((s, i) => {
    const d = s.points.map(([x, y], j) =>
      `${j ? "L" : "M"}${sx(Math.min(x, xMax)).toFixed(1)},${sy(y).toFixed(1)}`
    ).join("");
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    if (s.dots) {
      for (const [x, y] of s.points) {
        out.push(`<circle cx="${sx(x)}" cy="${sy(y)}" r="3" fill="${s.color}"/>`);
      }
    }
    const ly = PAD.top + 8 + i * 15;
    out.push(
      `<line x1="${sx(xMax) - 130}" x2="${
        sx(xMax) - 112
      }" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"/>`,
      `<text x="${sx(xMax) - 108}" y="${ly + 4}">${esc(s.name)}</text>`,
    );
  });
  return out.join("\n");
}

function cdf(sorted: number[]): [number, number][] {
  return sorted.map((ms, i) => [ms, ((i + 1) / sorted.length) * 100]);
}

export function renderChart(data: ChartData): string {
  const all = [...data.latency.listen, ...data.latency.noListen];
  const xMax = ticks(Math.max(...all) * 1.05).at(-1)! || 1;
  const latency = panel(
    0,
    "Diamond latency on an idle worker",
    "ms, start_flow to run:completed",
    "% of runs",
    Math.max(xMax, Math.max(...all)),
    100,
    [
      { name: "LISTEN", color: "#1f77b4", points: cdf(data.latency.listen) },
      { name: "no LISTEN (pooler)", color: "#d62728", points: cdf(data.latency.noListen) },
    ],
    ticks(Math.max(xMax, Math.max(...all)), 4),
  );
  const yMax = Math.max(data.commitRate, ...data.scaleOut.map((p) => p.tasksPerSecond)) * 1.1;
  const scale = panel(
    W,
    "Scale-out, one-step runs, default settings",
    "worker processes",
    "tasks/s",
    4,
    yMax,
    [
      {
        name: "tasks/s",
        color: "#2ca02c",
        dots: true,
        points: data.scaleOut.map((p) => [p.workers, p.tasksPerSecond]),
      },
      {
        name: "server commit rate",
        color: "#999",
        points: [[0, data.commitRate], [4, data.commitRate]],
      },
    ],
    [1, 2, 4],
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H}" viewBox="0 0 ${
    2 * W
  } ${H}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
${latency}
${scale}
</svg>
`;
}
