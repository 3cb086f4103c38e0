# written by scripts/natsvc-plots.py; run as: gnuplot table_unreachable.gp (in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 800,500 noenhanced
} else {
  set terminal png size 800,500 noenhanced
}
set output 'table_unreachable.png'
set grid
set title 'routing-table entries network-wide, and the share a stranger cannot reach'
set xlabel 'simulated time (s)'
set ylabel 'share unreachable'
set yrange [0:1]
set y2label 'table entries'
set y2tics
set ytics nomirror
set key top left
plot 'table_unreachable.dat' index 0 using 1:4 with lines lw 3 title 'unreachable share, mix', \
     '' index 1 using 1:4 with lines lw 1 dt 2 title 'unreachable share, all public', \
     '' index 0 using 1:2 axes x1y2 with lines lw 2 title 'entries, mix', \
     '' index 1 using 1:2 axes x1y2 with lines lw 2 title 'entries, all public'
