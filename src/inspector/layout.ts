/**
 * A flow's DAG laid out by dagre (left to right), so the page only draws boxes and lines.
 * Laid out on the server: the page needs no graph library of its own and no bundler.
 */
import dagre from "@dagrejs/dagre";
import type { FlowStep } from "./queries.ts";

export interface LaidOutNode {
  step_slug: string;
  step_type: "single" | "map";
  /** Centre of the box. */
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface LaidOutEdge {
  from: string;
  to: string;
  points: { x: number; y: number }[];
}

export interface FlowLayout {
  width: number;
  height: number;
  nodes: LaidOutNode[];
  edges: LaidOutEdge[];
}

const CHAR_WIDTH = 7.5;
const NODE_HEIGHT = 36;

export function layoutFlow(steps: readonly FlowStep[]): FlowLayout {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 48, marginx: 8, marginy: 8 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const step of steps) {
    // Room for the slug and, on a map step, its "map" badge.
    const label = step.step_slug.length + (step.step_type === "map" ? 5 : 0);
    graph.setNode(step.step_slug, {
      width: Math.max(80, label * CHAR_WIDTH + 28),
      height: NODE_HEIGHT,
    });
  }
  for (const step of steps) {
    for (const dep of step.deps) graph.setEdge(dep, step.step_slug);
  }
  dagre.layout(graph);
  const size = graph.graph();
  return {
    width: Math.ceil(size.width ?? 0),
    height: Math.ceil(size.height ?? 0),
    nodes: steps.map((step) => {
      const node = graph.node(step.step_slug);
      return {
        step_slug: step.step_slug,
        step_type: step.step_type,
        x: node.x,
        y: node.y,
        width: node.width,
        height: node.height,
      };
    }),
    edges: graph.edges().map((edge) => ({
      from: edge.v,
      to: edge.w,
      points: graph.edge(edge).points.map((p: { x: number; y: number }) => ({ x: p.x, y: p.y })),
    })),
  };
}
