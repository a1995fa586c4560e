/**
 * A flow with a map step, used by the demo: split a text into sentences, count
 * each sentence's words in parallel (one task per sentence), then total them.
 */
import { Flow } from "../src/dsl/mod.ts";

export interface WordStatsInput {
  text: string;
}

export default new Flow<WordStatsInput>({ slug: "word_stats", maxAttempts: 3, timeout: 10 })
  .array(
    { slug: "sentences" },
    ({ run }) => run.text.split(/(?<=[.!?])\s+/).map((s) => s.trim()).filter((s) => s.length > 0),
  )
  .map({ slug: "count_words", array: "sentences" }, (sentence) => ({
    sentence,
    words: sentence.split(/\s+/).filter(Boolean).length,
  }))
  .step({ slug: "totals", dependsOn: ["count_words"] }, ({ count_words }) => ({
    sentences: count_words.length,
    words: count_words.reduce((sum, s) => sum + s.words, 0),
    longest: count_words.reduce((a, b) => (b.words > a.words ? b : a), { sentence: "", words: 0 })
      .sentence,
  }));
