import { createWorker } from "edgeflow";
import AnalyzeWebsite from "../../../examples/analyze_website.ts";

Deno.serve(createWorker(AnalyzeWebsite));
