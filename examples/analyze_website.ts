/**
 * The spec's example flow: fetch a website, then score its sentiment and summarize it in
 * parallel, then save both. The handlers are deterministic stand-ins (no network, no AI):
 * `website` fabricates a page from the URL, so the flow runs anywhere, including in tests.
 *
 * Compile it into a migration with
 * `deno run -A src/compile/main.ts examples/analyze_website.ts`.
 */
import { Flow } from "../src/dsl/mod.ts";

export interface AnalyzeWebsiteInput {
  url: string;
}

const POSITIVE = ["good", "great", "fast", "reliable", "love"];
const NEGATIVE = ["bad", "slow", "broken", "hate", "down"];

export default new Flow<AnalyzeWebsiteInput>({
  slug: "analyze_website",
  maxAttempts: 3,
  timeout: 10,
})
  .step({ slug: "website" }, ({ run }) => {
    const host = new URL(run.url).hostname;
    return {
      content: `Welcome to ${host}. Our service is fast and reliable. Customers love it.`,
      status: 200,
    };
  })
  .step({ slug: "sentiment", dependsOn: ["website"], timeout: 30 }, ({ website }) => {
    const words = website.content.toLowerCase().match(/[a-z]+/g) ?? [];
    const positive = words.filter((word) => POSITIVE.includes(word)).length;
    const negative = words.filter((word) => NEGATIVE.includes(word)).length;
    const score = (positive - negative) / Math.max(1, positive + negative);
    return { score, label: score > 0 ? "positive" : score < 0 ? "negative" : "neutral" };
  })
  .step({ slug: "summary", dependsOn: ["website"] }, ({ website }) => {
    // The first sentence stands in for a model-written summary.
    return website.content.split(/(?<=\.)\s/)[0];
  })
  .step(
    { slug: "saveToDb", dependsOn: ["sentiment", "summary"] },
    ({ run, sentiment, summary }) => {
      // A real flow would insert through context.sql; the example only reports what it would save.
      return { status: "success", url: run.url, label: sentiment.label, summary };
    },
  );
