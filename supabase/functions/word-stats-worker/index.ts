import { createWorker } from "edgeflow";
import WordStats from "../../../examples/word_stats.ts";

Deno.serve(createWorker(WordStats));
