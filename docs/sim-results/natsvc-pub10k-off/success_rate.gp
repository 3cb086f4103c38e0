# written by roost-sim; run as: gnuplot success_rate.gp (in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 800,500 noenhanced
} else {
  set terminal png size 800,500 noenhanced
}
set output 'success_rate.png'
set grid
mode = ', CRYPTO OFF'
set title sprintf('success rate over time (ops finished per interval%s)', mode)
set xlabel 'time (s)'
set ylabel 'ops ok / ops finished'
set xrange [0:*]
set y2label 'hosts online'
set yrange [0:1.05]
set y2range [0:10501]
set ytics nomirror
set y2tics
set key bottom right
set datafile missing '?'
plot 'success_rate.dat' using 1:2 with linespoints lw 2 title 'success rate', \
     'success_rate.dat' using 1:3 axes x1y2 with lines title 'online'
set terminal svg size 800,500 noenhanced
set output 'success_rate.svg'
replot
unset output
